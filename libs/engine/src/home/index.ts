export { MonocoreHome } from './monocore-home.js';
