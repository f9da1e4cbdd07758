// Moved to the package's testing kit; the suite uses the exported one.
export * from '../../lib/testing/overlap-detector.js';
