#!/usr/bin/env node
import { VERSION } from '@monocore/engine';
process.stdout.write(`monocore ${VERSION}\n`);
