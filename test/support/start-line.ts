// Moved to the package's testing kit; the suite uses the exported one.
export { startWorkers, waitAtStartLine } from '../../lib/testing/worker-processes.js';
