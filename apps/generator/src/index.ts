/** The generator role's public entry: its module factory, for whoever composes roles in one process (modctl demo, tests). */
export { GeneratorModule } from './generator.module';
