/** The intake role's public entry: its app factory, for whoever composes roles in one process (modctl demo, tests). */
export { createIntakeApp, type IntakeAppOptions } from './app';
