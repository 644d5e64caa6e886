/**
 * Imported first by main.ts, before any module that reads the environment at load time: validates the whole
 * environment of this role against the settings table (@libs/settings) and exits 1, naming each bad variable,
 * before anything opens.
 */
import { exitOnInvalidSettings } from '@libs/settings';

exitOnInvalidSettings('notifier');
