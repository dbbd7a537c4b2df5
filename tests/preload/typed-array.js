// typed-array.js - the node workload of the preload tests and
// programs-bench.sh: a Float64Array of 192 MiB (V8 allocates its backing
// store with the C allocator), written twice and hashed; prints the hash.
const crypto = require('crypto');
const n = 24 << 20;		// 24M doubles: 192 MiB
const a = new Float64Array(n);
for (let i = 0; i < n; i += 512) a[i] = i * 0.5;
for (let r = 0; r < 2; r++) for (let i = 0; i < n; i += 512) a[i] += r;
console.log(crypto.createHash('sha256').update(Buffer.from(a.buffer)).digest('hex'));
