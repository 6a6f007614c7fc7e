//! Raw FAT records fatfs 0.3.6 gets wrong or omits: folder `.`/`..` slots, the root label.
//!
//! fatfs 0.3.6 (the latest release) writes a long-name record before each of
//! a new folder's `.` and `..` records, so they are not the first two slots
//! (rafalh/rust-fatfs#117, fixed upstream by #100 but not released), and on
//! FAT32 gives `..` of a top-level folder the root's cluster instead of 0
//! (#99). This pass walks every folder of an unmounted image and, where it
//! finds that layout, moves `.` and `..` into slots 0 and 1, points `..` of
//! top-level folders at cluster 0, and marks slots 2 and 3 deleted. Images
//! without that layout are left untouched.
//!
//! fatfs also labels only the boot sector; [`write_label`] adds the
//! volume-label record to the root folder, which Linux and `blkid` read.

use std::io::{self, Read, Seek, SeekFrom, Write};

const SLOT: usize = 32;
const ATTR_LFN: u8 = 0x0f;
const ATTR_DIR: u8 = 0x10;
const ATTR_VOLUME: u8 = 0x08;
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";

/// The geometry fields of a FAT boot sector this pass needs.
struct Geometry {
    bytes_per_sector: u64,
    sectors_per_cluster: u64,
    fat_start: u64,
    root_start: u64,
    root_bytes: u64,
    data_start: u64,
    fat_bits: u8,
    root_cluster: u32,
    clusters: u64,
    fs_info_sector: u64,
}

impl Geometry {
    fn read<F: Read + Write + Seek>(file: &mut F) -> io::Result<Self> {
        let boot = read_at(file, 0, 512)?;
        let u16_at = |at: usize| u64::from(u16::from_le_bytes([boot[at], boot[at + 1]]));
        let u32_at = |at: usize| u32::from_le_bytes(boot[at..at + 4].try_into().expect("4 bytes"));
        let bytes_per_sector = u16_at(11);
        let sectors_per_cluster = u64::from(boot[13]);
        let reserved = u16_at(14);
        let fats = u64::from(boot[16]);
        let root_entries = u16_at(17);
        let total = match u16_at(19) {
            0 => u64::from(u32_at(32)),
            n => n,
        };
        let per_fat = match u16_at(22) {
            0 => u64::from(u32_at(36)),
            n => n,
        };
        let root_sectors = (root_entries * SLOT as u64).div_ceil(bytes_per_sector);
        let root_start = reserved + fats * per_fat;
        let data_start = root_start + root_sectors;
        if bytes_per_sector == 0 || sectors_per_cluster == 0 || total <= data_start {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a FAT boot sector",
            ));
        }
        // The FAT type follows from the cluster count alone (Microsoft's rule).
        let clusters = (total - data_start) / sectors_per_cluster;
        let fat_bits = match clusters {
            0..4085 => 12,
            4085..65525 => 16,
            _ => 32,
        };
        Ok(Self {
            bytes_per_sector,
            sectors_per_cluster,
            fat_start: reserved * bytes_per_sector,
            root_start: root_start * bytes_per_sector,
            root_bytes: root_sectors * bytes_per_sector,
            data_start: data_start * bytes_per_sector,
            fat_bits,
            root_cluster: if fat_bits == 32 { u32_at(44) } else { 0 },
            clusters,
            fs_info_sector: if fat_bits == 32 { u16_at(48) } else { 0 },
        })
    }

    fn cluster_bytes(&self) -> u64 {
        self.bytes_per_sector * self.sectors_per_cluster
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_start + u64::from(cluster - 2) * self.cluster_bytes()
    }

    /// The FAT entry of `cluster` (first FAT).
    fn next<F: Read + Write + Seek>(&self, file: &mut F, cluster: u32) -> io::Result<u32> {
        let c = u64::from(cluster);
        Ok(match self.fat_bits {
            12 => {
                let b = read_at(file, self.fat_start + c * 3 / 2, 2)?;
                let v = u32::from(u16::from_le_bytes([b[0], b[1]]));
                if c % 2 == 0 {
                    v & 0xfff
                } else {
                    v >> 4
                }
            }
            16 => {
                let b = read_at(file, self.fat_start + c * 2, 2)?;
                u32::from(u16::from_le_bytes([b[0], b[1]]))
            }
            _ => {
                let b = read_at(file, self.fat_start + c * 4, 4)?;
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x0fff_ffff
            }
        })
    }

    /// The clusters of the chain starting at `first`.
    fn chain<F: Read + Write + Seek>(&self, file: &mut F, first: u32) -> io::Result<Vec<u32>> {
        let end = match self.fat_bits {
            12 => 0xff8,
            16 => 0xfff8,
            _ => 0x0fff_fff8,
        };
        let mut out = vec![first];
        let mut at = first;
        loop {
            let next = self.next(file, at)?;
            if next >= end {
                return Ok(out);
            }
            if next < 2 || out.len() > 1 << 24 || out.contains(&next) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "broken cluster chain",
                ));
            }
            out.push(next);
            at = next;
        }
    }
}

/// Writes a volume-label record named `label` into the first slot of the
/// root folder of the freshly formatted image in `file`, dated by the DOS
/// `date` and `time` words.
pub(crate) fn write_label<F: Read + Write + Seek>(
    file: &mut F,
    label: &[u8; 11],
    date: u16,
    time: u16,
) -> io::Result<()> {
    let geo = Geometry::read(file)?;
    let at = if geo.fat_bits == 32 {
        geo.cluster_offset(geo.root_cluster)
    } else {
        geo.root_start
    };
    let mut entry = [0u8; SLOT];
    entry[..11].copy_from_slice(label);
    entry[11] = ATTR_VOLUME;
    for (field, value) in [(14, time), (16, date), (18, date), (22, time), (24, date)] {
        entry[field..field + 2].copy_from_slice(&value.to_le_bytes());
    }
    file.seek(SeekFrom::Start(at))?;
    file.write_all(&entry)
}

/// Repairs every folder of the FAT image in `file` as the module docs say.
pub(crate) fn fix_dot_entries<F: Read + Write + Seek>(file: &mut F) -> io::Result<()> {
    let geo = Geometry::read(file)?;
    // (first cluster, whether the parent is the root) of folders to visit.
    let mut todo: Vec<(u32, bool)> = Vec::new();
    let root = if geo.fat_bits == 32 {
        read_dir(file, &geo, geo.root_cluster)?
    } else {
        read_at(file, geo.root_start, geo.root_bytes as usize)?
    };
    subfolders(&root, true, &mut todo);
    while let Some((cluster, parent_is_root)) = todo.pop() {
        fix_one(file, &geo, cluster, parent_is_root)?;
        let dir = read_dir(file, &geo, cluster)?;
        subfolders(&dir, false, &mut todo);
    }
    Ok(())
}

/// Records the free-cluster count and next-free hint in the FAT32 FSInfo
/// sector, which fatfs leaves "unknown" (fsck.vfat reports it); no-op on
/// FAT12/16, which have no FSInfo.
pub(crate) fn write_fs_info<F: Read + Write + Seek>(file: &mut F) -> io::Result<()> {
    let geo = Geometry::read(file)?;
    if geo.fat_bits != 32 || geo.fs_info_sector == 0 {
        return Ok(());
    }
    let fat = read_at(file, geo.fat_start, (4 * (geo.clusters + 2)) as usize)?;
    let mut free = 0u32;
    let mut first_free = None;
    for (cluster, entry) in fat.chunks_exact(4).enumerate().skip(2) {
        if u32::from_le_bytes(entry.try_into().expect("4 bytes")) & 0x0fff_ffff == 0 {
            free += 1;
            first_free.get_or_insert(cluster as u32);
        }
    }
    let mut fields = Vec::with_capacity(8);
    fields.extend_from_slice(&free.to_le_bytes());
    fields.extend_from_slice(&first_free.unwrap_or(0xffff_ffff).to_le_bytes());
    file.seek(SeekFrom::Start(
        geo.fs_info_sector * geo.bytes_per_sector + 488,
    ))?;
    file.write_all(&fields)
}

/// The bytes of the folder whose chain starts at `cluster`.
fn read_dir<F: Read + Write + Seek>(
    file: &mut F,
    geo: &Geometry,
    cluster: u32,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for c in geo.chain(file, cluster)? {
        out.extend(read_at(
            file,
            geo.cluster_offset(c),
            geo.cluster_bytes() as usize,
        )?);
    }
    Ok(out)
}

/// Adds the subfolders listed in `dir` to `todo`.
fn subfolders(dir: &[u8], in_root: bool, todo: &mut Vec<(u32, bool)>) {
    for slot in dir.chunks_exact(SLOT) {
        match slot[0] {
            0 => break,
            0xe5 => continue,
            _ => {}
        }
        let attr = slot[11];
        if attr == ATTR_LFN || attr & ATTR_VOLUME != 0 || attr & ATTR_DIR == 0 {
            continue;
        }
        if &slot[..11] == DOT || &slot[..11] == DOTDOT {
            continue;
        }
        let cluster = u32::from(u16::from_le_bytes([slot[20], slot[21]])) << 16
            | u32::from(u16::from_le_bytes([slot[26], slot[27]]));
        if cluster >= 2 {
            todo.push((cluster, in_root));
        }
    }
}

/// Rewrites the first four slots of one folder if fatfs 0.3.6 laid them out.
fn fix_one<F: Read + Write + Seek>(
    file: &mut F,
    geo: &Geometry,
    cluster: u32,
    parent_is_root: bool,
) -> io::Result<()> {
    let at = geo.cluster_offset(cluster);
    let slots = read_at(file, at, 4 * SLOT)?;
    let slot = |i: usize| &slots[i * SLOT..(i + 1) * SLOT];
    let buggy = slot(0)[11] == ATTR_LFN
        && &slot(1)[..11] == DOT
        && slot(2)[11] == ATTR_LFN
        && &slot(3)[..11] == DOTDOT;
    if !buggy {
        return Ok(());
    }
    let mut fixed = Vec::with_capacity(4 * SLOT);
    fixed.extend_from_slice(slot(1));
    let mut dotdot = slot(3).to_vec();
    if parent_is_root {
        // `..` of a top-level folder points at cluster 0, on FAT32 too.
        dotdot[20..22].fill(0);
        dotdot[26..28].fill(0);
    }
    fixed.extend_from_slice(&dotdot);
    for _ in 0..2 {
        let mut deleted = [0u8; SLOT];
        deleted[0] = 0xe5;
        fixed.extend_from_slice(&deleted);
    }
    file.seek(SeekFrom::Start(at))?;
    file.write_all(&fixed)
}

fn read_at<F: Read + Write + Seek>(file: &mut F, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}
