/** The notifier role's public entry: its module factory, for whoever composes roles in one process (tests). */
export { NotifierModule } from './notifier.module';
