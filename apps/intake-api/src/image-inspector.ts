// The door's image checks live in @libs/imaging beside the workers' decode, so both run the same sharp options.
export { inspectImage, sniffFormat, type ImageFacts } from '@libs/imaging';
