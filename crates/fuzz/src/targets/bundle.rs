//! Targets over kiln-bundle: verify of a bundle (gzip reader, tar reader, MANIFEST checks)
//! and the host contract's text members.

use std::io::Write;

use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};
use kiln_bundle::contract::{self, BundleMeta, HostMeta};
use kiln_bundle::{BuildManifest, GZIP_MEMBER_HEADER};

use super::Ctx;

/// Gzip member fields and deflate block markers.
pub(super) const GZIP_TOKENS: &[&[u8]] = &[
    &GZIP_MEMBER_HEADER,
    b"\x1f\x8b",
    b"\x08\x00",
    b"\x08\x08",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x00\x00\xff\xff",
    b"\x03\x00",
    b"\x01\x00\x00\xff\xff",
];

/// Tar header fields, names and kiln's entry names.
pub(super) const TAR_TOKENS: &[&[u8]] = &[
    b"ustar\x0000",
    b"ustar  \x00",
    b"././@LongLink",
    b"MANIFEST",
    b"rootfs/",
    b"../",
    b"/",
    b"0000644\x00",
    b"0000755\x00",
    b"0004755\x00",
    b"0000000\x00",
    b"00000000001\x00",
    b"77777777777\x00",
    &[0u8; 512],
];

/// Contract keys and line shapes.
pub(super) const CONTRACT_TOKENS: &[&[u8]] = &[
    b"KILN_ROLE=",
    b"KILN_OS=",
    b"KILN_ARCH=",
    b"KILN_CLUSTER=",
    b"KILN_HOST=",
    b"KILN_IP=",
    b"KILN_BUILD_ID=",
    b"KILN_GENERATION=",
    b"KILN_OS_FAMILY=",
    b"KILN_NOT_AFTER=",
    b"KILN_NOT_BEFORE=",
    b" 0 ",
    b" 18446744073709551615 ",
    b"=",
    b"\n",
    b"\r\n",
    b"  ",
    b" ",
    b" 0644 ",
    b" 0755 ",
    b" 0600 ",
    b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    b"bundles/",
    b".tar.gz",
    b"MANIFEST",
    b"SHA256SUMS",
    b"../",
    b"//",
    b"\"build_id\":",
    b"\"generation\":",
    b"\"bundles\":",
    b"\"hosts\":",
    b"\"outputs\":",
    b"{",
    b"}",
    b"\"",
];

/// The input as a bundle file, through `verify_bundle`.
pub(super) fn raw(ctx: &Ctx, data: &[u8]) {
    verify(ctx, data);
}

/// The input as the tar stream of a bundle: wrapped in canonical gzip members so the gzip
/// reader passes it to the tar checks, then through `verify_bundle`.
pub(super) fn tar(ctx: &Ctx, data: &[u8]) {
    verify(ctx, &canonical_gzip(data));
}

fn verify(ctx: &Ctx, bytes: &[u8]) {
    let path = ctx.scratch().join("input.tar.gz");
    std::fs::write(&path, bytes).expect("scratch folder is writable");
    if let Err(e) = kiln_bundle::verify_bundle(&path) {
        drop(e.to_string());
    }
}

/// Bytes a member holds; smaller than kiln's 1 MiB so inputs span several members.
const MEMBER: usize = 32 << 10;

/// `data` as gzip members in kiln's canonical form (fixed header, CRC32, ISIZE).
pub(crate) fn canonical_gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    for chunk in data.chunks(MEMBER) {
        out.extend_from_slice(&GZIP_MEMBER_HEADER);
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(chunk).expect("writes to memory");
        out.extend(enc.finish().expect("writes to memory"));
        let mut crc = Crc::new();
        crc.update(chunk);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
    }
    out
}

/// The input through every text member parser of the contract and the out folder.
pub(super) fn contract(_ctx: &Ctx, data: &[u8]) {
    let _ = kiln_bundle::fuzzing::manifest(data);
    let _ = kiln_bundle::fuzzing::sha256sums(data);
    match contract::parse_bundles(data) {
        Ok(refs) => drop(contract::render_bundles(&refs)),
        Err(e) => drop(e.to_string()),
    }
    match contract::parse_deltas(data) {
        Ok(deltas) => drop(contract::render_bundles_with_deltas(&[], &deltas)),
        Err(e) => drop(e.to_string()),
    }
    match HostMeta::parse(data) {
        Ok(host) => drop(host.render()),
        Err(e) => drop(e.to_string()),
    }
    match BundleMeta::parse(data) {
        Ok(meta) => drop(meta.render()),
        Err(e) => drop(e.to_string()),
    }
    match contract::parse_lines(contract::UNITS, data) {
        Ok(lines) => drop(contract::render_lines(&lines)),
        Err(e) => drop(e.to_string()),
    }
    let _ = contract::parse_health(data);
    if let Ok(manifest) = serde_json::from_slice::<BuildManifest>(data) {
        drop(kiln_bundle::json_bytes(&manifest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn seeds(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        crate::corpus::load(&dir, usize::MAX)
    }

    /// The contract seeds must be in the current formats (MANIFEST changed once already).
    #[test]
    fn contract_seeds_parse() {
        for (path, data) in seeds("contract") {
            let name = path.file_name().unwrap().to_str().unwrap();
            let ok = match name {
                n if n.ends_with("MANIFEST") => kiln_bundle::fuzzing::manifest(&data).is_some(),
                "SHA256SUMS" => kiln_bundle::fuzzing::sha256sums(&data).is_some(),
                "BUNDLES" => contract::parse_bundles(&data).is_ok(),
                "HOST" => HostMeta::parse(&data).is_ok(),
                "BUNDLE" => BundleMeta::parse(&data).is_ok(),
                "MANIFEST.json" => serde_json::from_slice::<BuildManifest>(&data).is_ok(),
                _ => contract::parse_lines(contract::UNITS, &data).is_ok(),
            };
            assert!(ok, "{path:?} does not parse");
        }
    }

    /// The seeds must pass verify, or mutants never reach the checks behind the first error.
    #[test]
    fn bundle_seeds_verify_raw_and_rewrapped() {
        let dir = tempfile::tempdir().unwrap();
        for (path, data) in seeds("bundle") {
            let file = dir.path().join("seed.tar.gz");
            std::fs::write(&file, &data).unwrap();
            kiln_bundle::verify_bundle(&file).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        }
        for (path, data) in seeds("bundle-tar") {
            let file = dir.path().join("seed.tar.gz");
            std::fs::write(&file, canonical_gzip(&data)).unwrap();
            kiln_bundle::verify_bundle(&file).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        }
    }
}
