//! Mutators: generic byte edits (flips, truncation, chunk insert/duplicate/delete, splicing)
//! and format-aware ones (a target's tokens, numbers, tar header fields with a fixed checksum).

use crate::rng::Rng;

/// Bytes that often sit on a boundary of some check.
const INTERESTING_BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'0', b'7', b'9', b' ', b'\n', b'\t', b'"', b'\\', b'/', b'.', b'=',
];

/// Numbers that often sit on a boundary of some check, as text.
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "7",
    "255",
    "256",
    "4096",
    "65535",
    "2147483647",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1e309",
    "-0",
    "0x10",
    "0o777",
    "1.5",
    "nan",
    "inf",
];

/// How a target's inputs are shaped, for the format-aware mutators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Text or bytes with no further structure the mutators know.
    Plain,
    /// A tar stream: header blocks every 512 bytes where an entry starts.
    Tar,
}

/// What the mutators may use besides the input itself.
#[derive(Debug, Clone, Copy)]
pub struct Dictionary<'a> {
    /// Tokens of the format (keys, punctuation, magic numbers).
    pub tokens: &'a [&'a [u8]],
    /// The input's shape.
    pub shape: Shape,
}

/// Applies 1 to 8 stacked mutations to `data`; `other` is another corpus input to splice from.
pub fn mutate(
    rng: &mut Rng,
    data: &mut Vec<u8>,
    other: &[u8],
    dict: Dictionary<'_>,
    max_len: usize,
) {
    let most = if rng.one_in(2) { 2 } else { 8 };
    let rounds = 1 + rng.below(most);
    for _ in 0..rounds {
        one(rng, data, other, dict);
    }
    data.truncate(max_len);
}

fn one(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dict: Dictionary<'_>) {
    let kinds = if dict.shape == Shape::Tar { 14 } else { 12 };
    match rng.below(kinds) {
        0 => flip_bit(rng, data),
        1 => set_byte(rng, data),
        2 => delete_chunk(rng, data),
        3 => truncate(rng, data),
        4 => insert_random(rng, data),
        5 => duplicate_chunk(rng, data),
        6 => splice(rng, data, other),
        7 => insert_from(rng, data, other),
        8 | 9 => token(rng, data, dict.tokens),
        10 => number(rng, data),
        11 => swap_lines(rng, data),
        _ => tar_field(rng, data),
    }
}

fn flip_bit(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let i = rng.below(data.len());
        data[i] ^= 1 << rng.below(8);
    }
}

fn set_byte(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let i = rng.below(data.len());
        data[i] = if rng.one_in(2) {
            *rng.pick(INTERESTING_BYTES)
        } else {
            rng.next_u64() as u8
        };
    }
}

fn delete_chunk(rng: &mut Rng, data: &mut Vec<u8>) {
    if !data.is_empty() {
        let at = rng.below(data.len());
        let n = rng.len_up_to(data.len() - at);
        data.drain(at..at + n);
    }
}

fn truncate(rng: &mut Rng, data: &mut Vec<u8>) {
    let keep = rng.below(data.len() + 1);
    data.truncate(keep);
}

fn insert_random(rng: &mut Rng, data: &mut Vec<u8>) {
    let at = rng.below(data.len() + 1);
    let n = rng.len_up_to(32);
    let byte = *rng.pick(INTERESTING_BYTES);
    let chunk: Vec<u8> = (0..n)
        .map(|_| {
            if rng.one_in(2) {
                byte
            } else {
                rng.next_u64() as u8
            }
        })
        .collect();
    data.splice(at..at, chunk);
}

fn duplicate_chunk(rng: &mut Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let from = rng.below(data.len());
    let n = rng.len_up_to(data.len() - from);
    let chunk = data[from..from + n].to_vec();
    let copies = if rng.one_in(8) { 1 + rng.below(64) } else { 1 };
    let at = rng.below(data.len() + 1);
    let repeated: Vec<u8> = chunk.iter().copied().cycle().take(n * copies).collect();
    data.splice(at..at, repeated);
}

/// A prefix of `data` followed by a suffix of `other`.
fn splice(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let cut = rng.below(data.len() + 1);
    let from = rng.below(other.len() + 1);
    data.truncate(cut);
    data.extend_from_slice(&other[from..]);
}

/// A chunk of `other` inserted into or written over `data`.
fn insert_from(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    if other.is_empty() {
        return;
    }
    let from = rng.below(other.len());
    let n = rng.len_up_to(other.len() - from);
    let at = rng.below(data.len() + 1);
    let end = if rng.one_in(2) {
        at
    } else {
        (at + n).min(data.len())
    };
    data.splice(at..end, other[from..from + n].iter().copied());
}

fn token(rng: &mut Rng, data: &mut Vec<u8>, tokens: &[&[u8]]) {
    if tokens.is_empty() {
        return insert_random(rng, data);
    }
    let t = *rng.pick(tokens);
    let at = rng.below(data.len() + 1);
    let end = if rng.one_in(3) {
        (at + t.len()).min(data.len())
    } else {
        at
    };
    data.splice(at..end, t.iter().copied());
}

/// Replaces a run of ASCII digits with a boundary number.
fn number(rng: &mut Rng, data: &mut Vec<u8>) {
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
        .collect();
    let replacement = rng.pick(INTERESTING_NUMBERS).as_bytes();
    if starts.is_empty() {
        let at = rng.below(data.len() + 1);
        data.splice(at..at, replacement.iter().copied());
        return;
    }
    let start = *rng.pick(&starts);
    let end = (start..data.len())
        .find(|&i| !data[i].is_ascii_digit())
        .unwrap_or(data.len());
    data.splice(start..end, replacement.iter().copied());
}

/// Moves one line elsewhere (reordered keys, tables and entries).
fn swap_lines(rng: &mut Rng, data: &mut Vec<u8>) {
    let mut lines: Vec<Vec<u8>> = data
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    if lines.len() < 2 {
        return;
    }
    let from = rng.below(lines.len());
    let line = lines.remove(from);
    let to = rng.below(lines.len() + 1);
    lines.insert(to, line);
    *data = lines.concat();
}

/// Offsets and lengths of the numeric fields of a tar header: mode, uid, gid, size, mtime.
const TAR_NUMERIC: &[(usize, usize)] = &[(100, 8), (108, 8), (116, 8), (124, 12), (136, 12)];

/// Edits one field of a tar header block and fixes its checksum, so the edit gets past the
/// checksum test to the checks behind it.
fn tar_field(rng: &mut Rng, data: &mut [u8]) {
    let blocks: Vec<usize> = (0..data.len() / 512)
        .map(|b| b * 512)
        .filter(|&at| looks_like_header(&data[at..at + 512]))
        .collect();
    if blocks.is_empty() {
        return flip_bit(rng, data);
    }
    let at = *rng.pick(&blocks);
    let h = &mut data[at..at + 512];
    match rng.below(6) {
        0 => {
            let (off, len) = *rng.pick(TAR_NUMERIC);
            let value: u64 = match rng.below(4) {
                0 => rng.next_u64(),
                1 => rng.next_u64() % 4096,
                2 => 1 << rng.below(40),
                _ => 0o777_7777_7777,
            };
            let text = format!("{:0width$o}", value, width = len - 1);
            let bytes = text.as_bytes();
            let bytes = &bytes[bytes.len().saturating_sub(len - 1)..];
            h[off..off + bytes.len()].copy_from_slice(bytes);
            h[off + len - 1] = 0;
            if rng.one_in(4) {
                // Base-256 form (high bit set), which GNU tar uses for large values.
                h[off] = 0x80;
            }
        }
        1 => h[156] = *rng.pick(b"0\x0012345679LKxgSDV"),
        2 => {
            let name = *rng.pick::<&[u8]>(TAR_NAMES);
            h[..100].fill(0);
            h[..name.len()].copy_from_slice(name);
        }
        3 => h[257..265].copy_from_slice(if rng.one_in(2) {
            b"ustar\x0000"
        } else {
            b"ustar  \0"
        }),
        4 => {
            let i = 345 + rng.below(155);
            h[i] = *rng.pick(b"a/.\0");
        }
        _ => {
            let i = rng.below(512);
            h[i] = rng.next_u64() as u8;
        }
    }
    fix_checksum(h);
}

/// Entry names that break one of verify's path rules (or the MANIFEST-first rule).
const TAR_NAMES: &[&[u8]] = &[
    b"../etc/passwd",
    b"/abs",
    b"MANIFEST",
    b"a//b",
    b"./x",
    b"rootfs/etc/x y",
    b"",
];

fn looks_like_header(block: &[u8]) -> bool {
    &block[257..262] == b"ustar"
}

/// Writes the checksum of a header block (the sum of its bytes, the checksum field as spaces).
pub fn fix_checksum(h: &mut [u8]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_is_deterministic_and_bounded() {
        let dict = Dictionary {
            tokens: &[b"[[host]]", b"="],
            shape: Shape::Plain,
        };
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut out = Vec::new();
            for _ in 0..200 {
                let mut d = b"name = \"lab\"\nport = 6443\n".to_vec();
                mutate(
                    &mut rng,
                    &mut d,
                    b"[[host]]\nip = \"10.0.0.1\"\n",
                    dict,
                    100,
                );
                assert!(d.len() <= 100);
                out.push(d);
            }
            out
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn tar_field_keeps_the_checksum_valid() {
        let mut block = vec![0u8; 512];
        block[..4].copy_from_slice(b"file");
        block[257..265].copy_from_slice(b"ustar\x0000");
        fix_checksum(&mut block);
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            tar_field(&mut rng, &mut block);
            let stored = std::str::from_utf8(&block[148..154]).unwrap();
            let mut copy = block.clone();
            copy[148..156].fill(b' ');
            let sum: u32 = copy.iter().map(|&b| b as u32).sum();
            assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        }
    }
}
