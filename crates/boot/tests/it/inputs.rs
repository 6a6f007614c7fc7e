//! Bad input is refused before anything is started, naming what is wrong.

use std::path::Path;

use kiln_boot::{boot, cluster_dir, BootError, BootOptions, Layout, SeedKind};

use crate::support::{fake_out, FakeHost};

fn cluster(tmp: &Path) -> std::path::PathBuf {
    fake_out(
        &tmp.join("out"),
        "lab",
        &[FakeHost::new("etcd1", 11), FakeHost::new("etcd2", 12)],
    )
}

fn guest(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("guest");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["disk.qcow2", "vmlinuz", "initrd.img"] {
        std::fs::write(dir.join(f), f).unwrap();
    }
    dir.join("disk.qcow2")
}

fn err(opts: &BootOptions) -> String {
    boot(opts, &()).unwrap_err().to_string()
}

#[test]
fn the_out_folder_or_its_single_cluster_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cluster(tmp.path());
    assert_eq!(cluster_dir(&dir).unwrap(), dir);
    assert_eq!(cluster_dir(&tmp.path().join("out")).unwrap(), dir);

    fake_out(&tmp.path().join("out"), "prod", &[FakeHost::new("a", 1)]);
    let e = cluster_dir(&tmp.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("several clusters (lab, prod)"), "{e}");
    let e = cluster_dir(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("no vagrant.json"), "{e}");
}

#[test]
fn unknown_hosts_are_named_with_the_known_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = BootOptions::new(cluster(tmp.path()), guest(tmp.path()));
    opts.hosts = Some(vec!["etcd1".into(), "etcd9".into()]);
    assert_eq!(
        err(&opts),
        "unknown host(s) etcd9; the cluster has etcd1, etcd2"
    );
}

#[test]
fn a_disk_size_out_of_range_is_refused_before_any_guest_starts() {
    for gb in [0, 1, 4097] {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = BootOptions::new(cluster(tmp.path()), guest(tmp.path()));
        opts.disk_gb = Some(gb);
        assert_eq!(
            err(&opts),
            format!("disk size {gb} GiB: a guest disk must be 2..=4096 GiB")
        );
    }
}

#[test]
fn container_hosts_must_exist_and_need_a_root_tree_and_a_seed_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cluster(tmp.path());
    let image = guest(tmp.path());
    let mut opts = BootOptions::new(&dir, &image);
    opts.containers = vec!["etcd7".into()];
    assert_eq!(
        err(&opts),
        "unknown host(s) etcd7; the cluster has etcd1, etcd2"
    );

    opts.containers = vec!["etcd2".into()];
    let e = err(&opts);
    assert!(
        e.starts_with("container root tree (with sbin/init) ")
            && e.ends_with(
                "guest/rootfs does not exist (tests/e2e/guest-image.sh keeps it as rootfs beside the disk)"
            ),
        "{e}"
    );

    let rootfs = tmp.path().join("guest/rootfs/sbin");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("init"), "").unwrap();
    let _ = std::fs::remove_file(dir.join("hosts/etcd2/seed/user-data"));
    let e = err(&opts);
    assert!(
        e.starts_with("seed user-data ")
            && e.ends_with(
                "hosts/etcd2/seed/user-data does not exist (a container host boots from its \
                 seed folder, which kiln build writes)"
            ),
        "{e}"
    );
    // Nothing was started, and the run folder is gone with the error.
    assert!(!kiln_boot::default_log_dir(&dir).join("etcd2.log").exists());
}

#[test]
fn missing_image_kernel_and_seed_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cluster(tmp.path());
    let image = guest(tmp.path());

    let opts = BootOptions::new(&dir, tmp.path().join("nope.qcow2"));
    assert!(err(&opts).starts_with("base image "), "{}", err(&opts));
    assert!(
        err(&opts).contains("nope.qcow2 does not exist (build one with tests/e2e/guest-image.sh)")
    );

    let mut opts = BootOptions::new(&dir, &image);
    opts.kernel = Some(tmp.path().join("bzImage"));
    assert!(err(&opts).starts_with("kernel "), "{}", err(&opts));

    std::fs::remove_file(dir.join("hosts/etcd2/cidata.img")).unwrap();
    let mut opts = BootOptions::new(&dir, &image);
    opts.seed = SeedKind::Vfat;
    let e = err(&opts);
    assert!(
        e.contains("seed image ")
            && e.contains(
                "hosts/etcd2/cidata.img does not exist (host etcd2, seed_img in vagrant.json)"
            ),
        "{e}"
    );
}

fn with_layout(json: &str) -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cluster(tmp.path());
    std::fs::write(dir.join("vagrant.json"), json).unwrap();
    let opts = BootOptions::new(&dir, guest(tmp.path()));
    let e = err(&opts);
    (tmp, e)
}

#[test]
fn bad_layouts_are_refused_with_the_reason() {
    let host = |extra: &str| {
        format!(
            r#"{{"cluster":"lab","hosts":[{{"name":"etcd1","ip":"10.77.0.11","mac":"52:54:00:77:00:11","seed_iso":"hosts/etcd1/cidata.iso"{extra}}}]}}"#
        )
    };
    let cases = [
        (
            r#"{"cluster":"lab","hosts":[]}"#.to_owned(),
            "vagrant.json: no hosts",
        ),
        ("{".to_owned(), "cannot parse"),
        (
            host(r#","memory_mb":64"#),
            "host etcd1: memory 64 MiB is outside 128..=65536",
        ),
        (
            host("").replace("hosts/etcd1/cidata.iso", "../../etc/passwd"),
            r#"host etcd1: seed_iso "../../etc/passwd" must not hold '..' or '.' components"#,
        ),
        (
            host("").replace(
                r#""seed_iso":"hosts/etcd1/cidata.iso""#,
                r#""seed_iso":null"#,
            ),
            "host etcd1 has no seed_iso (build the iso seed, or boot with the other seed kind)",
        ),
        (
            host("").replace("52:54:00:77:00:11", "52:54:00:77:00"),
            r#"host etcd1: mac "52:54:00:77:00" is not six ':'-separated hex pairs"#,
        ),
        (
            host("").replace(r#""name":"etcd1""#, r#""name":"a/x""#),
            r#"host name "a/x" may only hold letters"#,
        ),
    ];
    for (json, want) in cases {
        let (_tmp, e) = with_layout(&json);
        assert!(e.contains(want), "{json}\n=> {e}");
    }
    let two = r#"{"cluster":"lab","hosts":[
        {"name":"a","ip":"10.77.0.1","mac":"52:54:00:77:00:11","seed_iso":"hosts/etcd1/cidata.iso"},
        {"name":"b","ip":"10.77.0.2","mac":"52:54:00:77:00:11","seed_iso":"hosts/etcd2/cidata.iso"}]}"#;
    let (_tmp, e) = with_layout(two);
    assert!(
        e.contains("host b: mac 52:54:00:77:00:11 is used by another host"),
        "{e}"
    );
}

#[test]
fn the_layout_keeps_unknown_keys_working() {
    // kiln build may add keys later; boot ignores what it does not use.
    let tmp = tempfile::tempdir().unwrap();
    let dir = cluster(tmp.path());
    let layout = Layout::load(&dir).unwrap();
    assert_eq!(layout.cluster, "lab");
    assert_eq!(layout.hosts[1].name, "etcd2");
    assert_eq!(layout.hosts[1].memory_mb, Some(512));
    let plans = layout
        .plan(&dir, None, SeedKind::Iso, Some(2048), &[])
        .unwrap();
    assert_eq!(plans.len(), 2);
    assert!(matches!(
        boot(&BootOptions::new(tmp.path(), "x"), &()),
        Err(BootError::OutFolder { .. })
    ));
}

#[test]
fn link_options_are_checked_against_each_other_and_the_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = BootOptions::new(cluster(tmp.path()), guest(tmp.path()));
    opts.link_services = vec!["5000=docker-registry serve c.yml".parse().unwrap()];
    assert_eq!(
        err(&opts),
        "link services need an address on the link: give --link-address ADDRESS/PREFIX"
    );
    opts.link_address = Some("10.77.0.12/24".parse().unwrap());
    assert_eq!(
        err(&opts),
        "the link address 10.77.0.12/24 is host etcd2's address; choose a free one"
    );
    opts.link_address = Some("10.77.0.250/24".parse().unwrap());
    opts.link_services
        .push("5000=python3 -m http.server".parse().unwrap());
    assert_eq!(err(&opts), "two link services listen on port 5000");
}

#[test]
fn network_booted_hosts_must_exist_be_qemu_guests_and_have_a_server_on_the_link() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = BootOptions::new(cluster(tmp.path()), guest(tmp.path()));
    opts.netboot = vec!["etcd3".into()];
    assert_eq!(
        err(&opts),
        "unknown host(s) etcd3; the cluster has etcd1, etcd2"
    );
    opts.netboot = vec!["etcd2".into()];
    let e = err(&opts);
    assert!(
        e.starts_with("host etcd2 boots from the network, but nothing on the link would answer it: give --link-address ADDRESS/PREFIX and a --link-service"),
        "{e}"
    );
    opts.link_address = Some("10.77.0.250/24".parse().unwrap());
    assert!(err(&opts).starts_with("host etcd2 boots from the network, but nothing"));
    opts.link_services = vec!["8080=kiln serve out --dhcp".parse().unwrap()];
    opts.containers = vec!["etcd2".into()];
    assert_eq!(
        err(&opts),
        "host etcd2 is both a container and booted from the network; a container has no firmware to boot"
    );
    // Without an image, every host must boot from the network.
    opts.containers.clear();
    opts.image = std::path::PathBuf::new();
    assert_eq!(
        err(&opts),
        "no image given, but etcd1 would boot from it: give the image, or boot every host with --netboot"
    );
    // Nothing was started or left: no run folder, no logs.
    assert!(!tmp.path().join("out/lab/boot").exists());
}

#[test]
fn hosts_booting_without_a_seed_image_need_none_in_the_build() {
    // A build with `--seed dir` only: vagrant.json names no seed image.
    let tmp = tempfile::tempdir().unwrap();
    let dir = cluster(tmp.path());
    let json = r#"{"cluster":"lab","hosts":[
        {"name":"etcd1","ip":"10.77.0.11","mac":"52:54:00:77:00:11"},
        {"name":"etcd2","ip":"10.77.0.12","mac":"52:54:00:77:00:12"}]}"#;
    std::fs::write(dir.join("vagrant.json"), json).unwrap();
    let layout = Layout::load(&dir).unwrap();
    let seedless = ["etcd1".to_owned(), "etcd2".to_owned()];
    let plans = layout
        .plan(&dir, None, SeedKind::Iso, None, &seedless)
        .unwrap();
    assert!(plans.iter().all(|p| p.seed.is_none()), "{plans:?}");
    // A host that boots from the image still needs its seed image, named as before.
    let e = layout
        .plan(&dir, None, SeedKind::Iso, None, &seedless[..1])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "host etcd2 has no seed_iso (build the iso seed, or boot with the other seed kind)"
        ),
        "{e}"
    );
}
