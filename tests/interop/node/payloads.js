// Deterministic test payloads for the Node interop peers. Text payloads mix
// ASCII with 2-, 3- and 4-byte UTF-8 sequences and are sized in encoded
// bytes, so the frame-length boundaries (125/126, 65535/65536) are exact.
'use strict';

const SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];

const ALPHABET = [...'abcdefghij klmnop '].concat(['é', 'ß', 'ж', '€', '✓', '漢', '𝄞', '😀']);

// A small seeded PRNG (xorshift32), so runs are reproducible.
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

let textBlock = null; // { chars: string[], str: string, bytes: number }

function getTextBlock() {
  if (textBlock) return textBlock;
  const next = rng(6455);
  const chars = [];
  let bytes = 0;
  while (bytes < 1 << 20) {
    const c = ALPHABET[next() % ALPHABET.length];
    chars.push(c);
    bytes += Buffer.byteLength(c, 'utf8');
  }
  textBlock = { chars, str: chars.join(''), bytes };
  return textBlock;
}

/** A string whose UTF-8 encoding is exactly `n` bytes. */
function textPayload(n) {
  const block = getTextBlock();
  const parts = [];
  let remaining = n;
  while (remaining >= block.bytes) {
    parts.push(block.str);
    remaining -= block.bytes;
  }
  const tail = [];
  for (const c of block.chars) {
    const w = Buffer.byteLength(c, 'utf8');
    if (w > remaining) break;
    tail.push(c);
    remaining -= w;
  }
  tail.push('x'.repeat(remaining));
  parts.push(tail.join(''));
  return parts.join('');
}

/** `n` bytes: a mix of pseudo-random (incompressible) and patterned data. */
function binaryPayload(n) {
  const next = rng(7692);
  const block = Buffer.alloc(64 << 10);
  for (let i = 0; i < 32 << 10; i++) block[i] = next() & 0xff;
  for (let i = 32 << 10; i < block.length; i++) block[i] = i & 0xff;
  const out = Buffer.alloc(n);
  for (let off = 0; off < n; off += block.length) block.copy(out, off, 0, Math.min(block.length, n - off));
  return out;
}

module.exports = { SIZES, textPayload, binaryPayload };
