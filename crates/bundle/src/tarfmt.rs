//! Reading tar header blocks: a strict parser for verification (the writing side is
//! [`kiln_fsio::tarw`]).

use crate::error::HeaderError;
pub(crate) use kiln_fsio::tarw::{padding, BLOCK};
use tar::Header;

/// The fields of a header block that verification looks at.
#[derive(Debug)]
pub(crate) struct ParsedHeader {
    /// Type flag byte (`b'0'`, `b'L'`, `b'2'`, ...).
    pub kind: u8,
    /// Path as stored (name, or ustar prefix + name).
    pub path: Vec<u8>,
    /// Content size.
    pub size: u64,
    /// Mode field.
    pub mode: u32,
    /// Owner ids.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
}

/// Parses one header block, checking its magic and checksum.
pub(crate) fn parse_header(block: &[u8; BLOCK]) -> Result<ParsedHeader, HeaderError> {
    let h = Header::from_byte_slice(block);
    if h.as_gnu().is_none() && h.as_ustar().is_none() {
        return Err(HeaderError::Magic);
    }
    let stored = h.cksum().map_err(HeaderError::ChecksumField)?;
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { b' ' } else { b } as u32)
        .sum();
    if stored != computed {
        return Err(HeaderError::Checksum { stored, computed });
    }
    let field = |field: &'static str| move |source| HeaderError::Field { field, source };
    Ok(ParsedHeader {
        kind: h.as_old().linkflag[0],
        path: h.path_bytes().into_owned(),
        size: h.size().map_err(field("size"))?,
        mode: h.mode().map_err(field("mode"))?,
        uid: h.uid().map_err(field("uid"))?,
        gid: h.gid().map_err(field("gid"))?,
    })
}

/// Human name of a tar type flag, for error messages.
pub(crate) fn kind_name(kind: u8) -> String {
    match kind {
        b'1' => "hard link".to_owned(),
        b'2' => "symbolic link".to_owned(),
        b'3' => "character device".to_owned(),
        b'4' => "block device".to_owned(),
        b'5' => "directory".to_owned(),
        b'6' => "fifo".to_owned(),
        b'7' => "contiguous file".to_owned(),
        b'x' | b'g' => "pax extended header".to_owned(),
        b'K' => "GNU long link name".to_owned(),
        other => format!("entry type {:?}", other as char),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_fsio::tarw::{push_header, Kind};

    fn push_file_header(out: &mut Vec<u8>, path: &str, size: u64, mode: u32, mtime: u64) {
        push_header(out, path, size, mode, mtime, Kind::File);
    }

    #[test]
    fn short_and_long_headers_parse_back() {
        let mut out = Vec::new();
        push_file_header(&mut out, "a/b", 5, 0o755, 42);
        assert_eq!(out.len(), BLOCK);
        let p = parse_header(out[..BLOCK].try_into().unwrap()).unwrap();
        assert_eq!(
            (p.kind, p.path.as_slice(), p.size, p.mode),
            (b'0', &b"a/b"[..], 5, 0o755)
        );

        let long = format!("{}/file", "d".repeat(150));
        let mut out = Vec::new();
        push_file_header(&mut out, &long, 7, 0o644, 42);
        assert_eq!(out.len(), 3 * BLOCK); // 156-byte name fits one data block
        let l = parse_header(out[..BLOCK].try_into().unwrap()).unwrap();
        assert_eq!((l.kind, l.size), (b'L', long.len() as u64 + 1));
        assert_eq!(&out[BLOCK..BLOCK + long.len()], long.as_bytes());
        let last = out.len() - BLOCK;
        let f = parse_header(out[last..].try_into().unwrap()).unwrap();
        assert_eq!((f.kind, f.size), (b'0', 7));
    }

    #[test]
    fn checksum_is_checked() {
        let mut out = Vec::new();
        push_file_header(&mut out, "x", 1, 0o644, 0);
        out[0] = b'y';
        let err = parse_header(out[..BLOCK].try_into().unwrap()).unwrap_err();
        assert!(matches!(err, HeaderError::Checksum { .. }), "{err}");
    }
}
