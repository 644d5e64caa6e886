// Test files run TS sources, and engine threads load them through @swc-node/register. A second thread that
// loads swc's native addon after the first one exited kills a vitest fork unless the fork's main thread
// holds the addon too (as `node -r @swc-node/register` does for the apps), so load it here once.
import '@swc/core';
