//! VFAT and ISO seed images, checked with blkid, fsck.vfat, mtools and isoinfo.

use std::path::{Path, PathBuf};
use std::process::Command;

use cloud_init_config::*;

use crate::fixtures::seed;
use crate::tools::{blkid, run, run_text, tool};

/// 2023-11-14T22:13:20Z.
fn time() -> Timestamp {
    Timestamp::from_unix(1_700_000_000).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift64), incompressible enough to
/// catch misplaced clusters or extents.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Extra files in `dir`: a 20 MB bundle, a small secrets file and an empty file.
fn extras(dir: &Path) -> Vec<(String, PathBuf)> {
    let files = [
        ("kiln/etcd-3f9a1c.tar.gz", noise(20_000_000 + 123, 1)),
        ("kiln/secrets.tar.gz", noise(4097, 2)),
        ("kiln/empty", Vec::new()),
        // 64 characters: the longest name Joliet holds.
        (
            "kiln/a-very-long-bundle-name-that-fills-joliets-limit-0123456.tgz",
            noise(10, 3),
        ),
    ];
    files
        .into_iter()
        .map(|(inner, bytes)| {
            let src = dir.join(inner.replace('/', "_"));
            std::fs::write(&src, bytes).unwrap();
            (inner.to_owned(), src)
        })
        .collect()
}

fn mcopy(image: &Path, inner: &str) -> Vec<u8> {
    run(Command::new(tool("mcopy", "mtools"))
        .arg("-n")
        .arg("-i")
        .arg(image)
        .arg(format!("::{inner}"))
        .arg("-"))
    .stdout
}

/// `isoinfo -x` in the Rock Ridge (`-R`) or Joliet (`-J`) namespace.
fn isoinfo_x(image: &Path, namespace: &str, inner: &str) -> Vec<u8> {
    run(Command::new(tool("isoinfo", "genisoimage"))
        .args([namespace, "-x", &format!("/{inner}"), "-i"])
        .arg(image))
    .stdout
}

fn assert_label(image: &Path, fs_type: &str) {
    let out = blkid(image);
    assert!(out.lines().any(|l| l == "LABEL=CIDATA"), "{out}");
    assert!(out.lines().any(|l| l == format!("TYPE={fs_type}")), "{out}");
}

#[test]
fn vfat_image_is_labelled_clean_and_carries_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let extra = extras(dir.path());
    let image = dir.path().join("cidata.img");
    let seed = seed();
    write_vfat(&image, &seed, &extra, time()).unwrap();

    assert_label(&image, "vfat");
    // The boot-sector label too, not only the root-folder record.
    assert!(blkid(&image).lines().any(|l| l == "LABEL_FATBOOT=CIDATA"));
    let fsck = run_text(
        Command::new(tool("fsck.vfat", "dosfstools"))
            .arg("-n")
            .arg(&image),
    );
    // Version line and summary line only: no repairs proposed.
    assert_eq!(fsck.lines().count(), 2, "fsck.vfat -n reported:\n{fsck}");

    let listing = run_text(
        Command::new(tool("mdir", "mtools"))
            .args(["-/", "-b", "-i"])
            .arg(&image)
            .arg("::"),
    );
    for name in [
        "::/user-data",
        "::/meta-data",
        "::/network-config",
        "::/kiln/etcd-3f9a1c.tar.gz",
    ] {
        assert!(
            listing.lines().any(|l| l == name),
            "{name} missing from:\n{listing}"
        );
    }
    for file in seed.render().unwrap() {
        assert_eq!(mcopy(&image, file.name), file.bytes, "{}", file.name);
    }
    for (inner, src) in &extra {
        assert!(
            mcopy(&image, inner) == std::fs::read(src).unwrap(),
            "{inner} differs"
        );
    }
}

#[test]
fn fat_volume_has_the_size_label_and_files_asked_for_and_the_same_bytes_twice() {
    let dir = tempfile::tempdir().unwrap();
    let loader = dir.path().join("loader.efi");
    std::fs::write(&loader, noise(600_001, 4)).unwrap();
    let files = [("EFI/BOOT/BOOTX64.EFI".to_owned(), loader)];
    let image = dir.path().join("esp.img");
    let digest = write_fat_volume(&image, "ESP", 0x1234_abcd, 64 << 20, &files, time()).unwrap();
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 64 << 20);
    assert_eq!(digest.size, 64 << 20);
    let out = blkid(&image);
    for want in [
        "LABEL=ESP",
        "LABEL_FATBOOT=ESP",
        "TYPE=vfat",
        "UUID=1234-ABCD",
    ] {
        assert!(out.lines().any(|l| l == want), "{want} in:\n{out}");
    }
    let fsck = run_text(
        Command::new(tool("fsck.vfat", "dosfstools"))
            .arg("-n")
            .arg(&image),
    );
    assert_eq!(fsck.lines().count(), 2, "fsck.vfat -n reported:\n{fsck}");
    assert!(mcopy(&image, "EFI/BOOT/BOOTX64.EFI") == std::fs::read(&files[0].1).unwrap());
    let again = dir.path().join("again.img");
    write_fat_volume(&again, "ESP", 0x1234_abcd, 64 << 20, &files, time()).unwrap();
    assert!(std::fs::read(&again).unwrap() == std::fs::read(&image).unwrap());

    // A label FAT cannot hold is refused before anything is written.
    let bad = dir.path().join("bad.img");
    let err = write_fat_volume(&bad, "efi system", 1, 64 << 20, &files, time()).unwrap_err();
    assert!(err.to_string().contains("FAT volume label"), "{err}");
    assert!(!bad.exists());
}

#[test]
fn iso_image_is_labelled_and_carries_every_file_in_both_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let extra = extras(dir.path());
    let image = dir.path().join("cidata.iso");
    let seed = seed();
    write_iso(&image, &seed, &extra, time()).unwrap();

    assert_label(&image, "iso9660");
    let info = run_text(
        Command::new(tool("isoinfo", "genisoimage"))
            .arg("-d")
            .arg("-i")
            .arg(&image),
    );
    assert!(info.contains("Volume id: CIDATA"), "{info}");
    assert!(info.contains("Rock Ridge signatures"), "{info}");
    assert!(info.contains("Joliet with UCS level 3 found"), "{info}");
    for namespace in ["-R", "-J"] {
        let list = run_text(
            Command::new(tool("isoinfo", "genisoimage"))
                .args(["-f", namespace, "-i"])
                .arg(&image),
        );
        for name in [
            "/user-data",
            "/meta-data",
            "/network-config",
            "/kiln",
            "/kiln/etcd-3f9a1c.tar.gz",
            "/kiln/empty",
        ] {
            assert!(
                list.lines().any(|l| l == name),
                "{name} missing from {namespace} listing:\n{list}"
            );
        }
        for file in seed.render().unwrap() {
            assert_eq!(
                isoinfo_x(&image, namespace, file.name),
                file.bytes,
                "{namespace} {}",
                file.name
            );
        }
    }
    for (inner, src) in &extra {
        assert!(
            isoinfo_x(&image, "-R", inner) == std::fs::read(src).unwrap(),
            "{inner} differs"
        );
    }
}

#[test]
fn iso_dates_all_come_from_the_given_time() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("cidata.iso");
    write_iso(&image, &seed(), &[], time()).unwrap();
    // blkid's UUID for ISO 9660 is the volume creation date.
    assert!(
        blkid(&image).contains("UUID=2023-11-14-22-13-20-00"),
        "{}",
        blkid(&image)
    );
    let listing = run_text(
        Command::new(tool("isoinfo", "genisoimage"))
            .args(["-l", "-R", "-i"])
            .arg(&image),
    );
    let dated: Vec<_> = listing
        .lines()
        .filter(|l| l.starts_with('-') || l.starts_with('d'))
        .collect();
    assert!(!dated.is_empty(), "{listing}");
    for line in dated {
        assert!(line.contains("Nov 14 2023"), "{line}");
        assert!(line.contains("    0    0 "), "owner not 0: {line}");
    }
}

#[test]
fn vfat_dates_all_come_from_the_given_time() {
    let dir = tempfile::tempdir().unwrap();
    let extra = extras(dir.path());
    let image = dir.path().join("cidata.img");
    write_vfat(&image, &seed(), &extra[1..], time()).unwrap();
    let listing = run_text(
        Command::new(tool("mdir", "mtools"))
            .args(["-/", "-i"])
            .arg(&image)
            .arg("::"),
    );
    let dated: Vec<_> = listing.lines().filter(|l| l.contains("  22:13")).collect();
    // user-data, meta-data, network-config, kiln, ., .., three files.
    assert_eq!(dated.len(), 9, "{listing}");
    assert!(dated.iter().all(|l| l.contains("2023-11-14")), "{listing}");
}

/// Writes both images twice from copies of the sources in different folders,
/// with different source mtimes and `extra` order: the bytes must not change.
#[test]
fn images_are_byte_identical_across_writes() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let a = extras(first.path());
    let mut b = extras(second.path());
    b.reverse();
    for (_, src) in &b {
        let file = std::fs::File::options().write(true).open(src).unwrap();
        file.set_modified(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 365),
        )
        .unwrap();
    }
    let seed = seed();
    write_vfat(&first.path().join("x.img"), &seed, &a, time()).unwrap();
    write_vfat(&second.path().join("y.img"), &seed, &b, time()).unwrap();
    write_iso(&first.path().join("x.iso"), &seed, &a, time()).unwrap();
    write_iso(&second.path().join("y.iso"), &seed, &b, time()).unwrap();
    for (x, y) in [("x.img", "y.img"), ("x.iso", "y.iso")] {
        let x = std::fs::read(first.path().join(x)).unwrap();
        let y = std::fs::read(second.path().join(y)).unwrap();
        assert_eq!(x.len(), y.len());
        assert!(x == y, "image bytes differ");
    }
    // A different timestamp does change them (the time is really used).
    let later = Timestamp::from_unix(1_800_000_000).unwrap();
    write_iso(&second.path().join("z.iso"), &seed, &b, later).unwrap();
    assert_ne!(
        std::fs::read(first.path().join("x.iso")).unwrap(),
        std::fs::read(second.path().join("z.iso")).unwrap()
    );
}

#[test]
fn image_sizes_follow_the_contents() {
    let dir = tempfile::tempdir().unwrap();
    let extra = extras(dir.path());
    let small = dir.path().join("small.img");
    let big = dir.path().join("big.img");
    write_vfat(&small, &seed(), &[], time()).unwrap();
    write_vfat(&big, &seed(), &extra, time()).unwrap();
    let small = std::fs::metadata(&small).unwrap().len();
    let big = std::fs::metadata(&big).unwrap().len();
    assert!(small <= 2 << 20, "a bare seed takes {small} bytes");
    assert!(
        big > 20_000_000 && big < 24 << 20,
        "a 20 MB payload takes {big} bytes"
    );
}

#[test]
fn bad_extra_files_fail_naming_the_path_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, b"x").unwrap();
    let missing = dir.path().join("no-such-bundle.tar.gz");
    let cases: Vec<(Vec<(String, PathBuf)>, String)> = vec![
        (
            vec![("kiln/a".into(), missing.clone())],
            missing.display().to_string(),
        ),
        (
            vec![("../escape".into(), src.clone())],
            "\"../escape\"".into(),
        ),
        (vec![("/abs".into(), src.clone())], "\"/abs\"".into()),
        (
            vec![("User-Data".into(), src.clone())],
            "\"User-Data\"".into(),
        ),
        (
            vec![
                ("kiln/x".into(), src.clone()),
                ("KILN/X".into(), src.clone()),
            ],
            "\"kiln/x\"".into(),
        ),
        (
            vec![("kiln".into(), dir.path().to_owned())],
            dir.path().display().to_string(),
        ),
    ];
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (extra, needle) in cases {
        for write in [write_vfat, write_iso] {
            let err = write(&out.join("cidata"), &seed(), &extra, time())
                .unwrap_err()
                .to_string();
            assert!(err.contains(&needle), "{err:?} does not name {needle}");
            assert_eq!(
                std::fs::read_dir(&out).unwrap().count(),
                0,
                "left files behind"
            );
        }
    }
}

#[test]
fn timestamps_outside_fat_range_are_refused() {
    assert!(Timestamp::from_unix(0)
        .unwrap_err()
        .to_string()
        .contains('0'));
    assert!(Timestamp::from_unix(Timestamp::DOS_EPOCH.unix()).is_ok());
}

/// Past 256 MiB the image is FAT32, whose root folder, `..` records and
/// FSInfo sector take different paths through the writer.
#[test]
fn large_vfat_image_is_fat32_and_clean() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    // Sparse: cheap to create, still written in full into the image.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(270 << 20)
        .unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, noise(5000, 4)).unwrap();
    let extra = [
        ("kiln/big.tar.gz".to_owned(), big),
        ("kiln/nested/deeper/small".to_owned(), small.clone()),
    ];
    let image = dir.path().join("cidata.img");
    write_vfat(&image, &seed(), &extra, time()).unwrap();
    let id = blkid(&image);
    assert!(id.lines().any(|l| l == "VERSION=FAT32"), "{id}");
    assert_label(&image, "vfat");
    let fsck = run_text(
        Command::new(tool("fsck.vfat", "dosfstools"))
            .arg("-n")
            .arg(&image),
    );
    assert_eq!(fsck.lines().count(), 2, "fsck.vfat -n reported:\n{fsck}");
    assert_eq!(
        mcopy(&image, "kiln/nested/deeper/small"),
        std::fs::read(&small).unwrap()
    );
    assert_eq!(
        mcopy(&image, USER_DATA),
        render_user_data(&seed().user_data).unwrap()
    );
}
