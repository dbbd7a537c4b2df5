// js-heap.js - the node workload whose memory is V8's own heap: 800,000
// small objects (about 130 MiB of heap pages, which V8 reserves PROT_NONE
// and commits with mprotect), built, then walked twice; prints a checksum
// of their contents.
const a = [];
for (let i = 0; i < 800000; i++) a.push({ k: i, s: 'v' + i, d: [i, i * 2] });
let h = 0;
for (let r = 0; r < 2; r++)
	for (const o of a) h = (h * 31 + o.k + o.s.length + o.d[1] + r) >>> 0;
console.log(h);
