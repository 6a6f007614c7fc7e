//! What kiln serve hands out and refuses, path by path, and its log.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::*;
use crate::common::{kiln, Fixture};
use crate::seeds::{build_every_seed_form, runcmd_of, tool};

#[test]
fn serve_hands_out_blobs_scripts_and_seeds_and_each_secrets_url_once_across_restarts() {
    let fx = Fixture::new(false);
    let out = build_every_seed_form(&fx);
    let m = manifest(&out);
    let state = fx.dir.join("serve-state");
    let nb = netboot(&fx.dir);
    let nb_arg = nb.to_str().unwrap();
    let s = Serve::start(
        &out,
        &state,
        &[
            "--netboot",
            nb_arg,
            "--kernel-arg",
            "console=ttyS0,115200n8",
            "--kernel-arg",
            "kiln.url={url}",
        ],
    );
    let url = s.url.clone();

    // Every bundle, delta and install.sh by digest, and under the plain names http sources use.
    let mut listed: Vec<String> = m["bundles"]
        .as_object()
        .unwrap()
        .values()
        .map(|b| b["file"].as_str().unwrap().to_string())
        .collect();
    listed.push("install.sh".into());
    for file in &listed {
        let sha = m["outputs"][file]["sha256"].as_str().unwrap();
        let (code, body) = get(&format!("{url}/blobs/sha256/{sha}"));
        assert_eq!((code, sha256(&body)), (200, sha.to_string()), "{file}");
        let (code, body) = get(&format!("{url}/{file}"));
        assert_eq!((code, sha256(&body)), (200, sha.to_string()), "{file}");
    }
    // Anything the MANIFEST does not list for serving is not there: host files, seeds by path,
    // other outputs by digest, made-up names.
    let secrets_sha = m["outputs"]["hosts/etcd1/secrets.tar.gz"]["sha256"]
        .as_str()
        .unwrap();
    let user_data_sha = m["outputs"]["hosts/etcd1/seed/user-data"]["sha256"]
        .as_str()
        .unwrap();
    for path in [
        format!("/blobs/sha256/{secrets_sha}"),
        format!("/blobs/sha256/{user_data_sha}"),
        "/blobs/sha256/".to_string(),
        "/hosts/etcd1/secrets.tar.gz".into(),
        "/hosts/etcd1/seed/user-data".into(),
        "/bundles/../hosts/etcd1/secrets.tar.gz".into(),
        "/bundles/nothing.tar.gz".into(),
        "/MANIFEST.json".into(),
        "/SHA256SUMS".into(),
        "/signing.pub".into(),
        "/netboot/../serve-state/tokens.json".into(),
        "/".into(),
    ] {
        assert_eq!(get(&format!("{url}{path}")).0, 404, "{path}");
    }

    // /boot.ipxe chains to the per-MAC script by the booting interface's MAC.
    let (code, boot) = get_text(&format!("{url}/boot.ipxe"));
    assert_eq!(code, 200);
    assert!(boot.starts_with("#!ipxe\n"), "{boot}");
    assert!(
        boot.contains(&format!(
            "chain {url}/ipxe/${{netX/mac:hexhyp}} || goto failed"
        )),
        "{boot}"
    );

    // A known MAC: kernel, initrd, and the seed URL in the kernel arguments.
    let etcd1_mac = hexhyp(&m["hosts"]["etcd1"]["mac"]);
    let (code, script) = get_text(&format!("{url}/ipxe/{etcd1_mac}"));
    assert_eq!(code, 200);
    let seed_token = token_after(&script, &format!("ds=nocloud-net;s={url}/seed/"));
    assert!(
        script.contains(&format!(
            "kernel {url}/netboot/vmlinuz initrd=initrd.img ds=nocloud-net;s={url}/seed/{seed_token}/ console=ttyS0,115200n8 kiln.url={url}\n"
        )),
        "{script}"
    );
    assert!(
        script.contains(&format!("initrd {url}/netboot/initrd.img\nboot\n")),
        "{script}"
    );
    // The same MAC in upper case with colons is the same host.
    let (_, again) = get_text(&format!(
        "{url}/ipxe/{}",
        etcd1_mac.to_uppercase().replace('-', ":")
    ));
    assert_eq!(again, script);
    assert_eq!(
        get(&format!("{url}/netboot/vmlinuz")).1,
        fs::read(nb.join("vmlinuz")).unwrap()
    );

    // An unknown MAC: a script that says so and stops in the shell, and no token.
    let (code, unknown) = get_text(&format!("{url}/ipxe/02-00-00-00-00-01"));
    assert_eq!(code, 200);
    assert!(
        unknown.contains("echo kiln serve: no host of cluster lab has MAC 02-00-00-00-00-01.")
            && unknown.ends_with("shell\n")
            && !unknown.lines().any(|l| l.starts_with("chain "))
            && !has_token(&unknown),
        "{unknown}"
    );
    assert_eq!(get(&format!("{url}/ipxe/not-a-mac")).0, 400);

    // The seed: the disk seed's meta-data and network-config; user-data that takes the secrets
    // from the one-time URL.
    let seed = out.join("hosts/etcd1/seed");
    for doc in ["meta-data", "network-config"] {
        let (code, body) = get(&format!("{url}/seed/{seed_token}/{doc}"));
        assert_eq!(
            (code, body),
            (200, fs::read(seed.join(doc)).unwrap()),
            "{doc}"
        );
    }
    let (code, ud) = get_text(&format!("{url}/seed/{seed_token}/user-data"));
    assert_eq!(code, 200);
    let ud_file = fx.dir.join("net-user-data");
    fs::write(&ud_file, &ud).unwrap();
    let r = tool("cloud-init", "cloud-init")
        .args(["schema", "--config-file"])
        .arg(&ud_file)
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    let secrets_token = token_after(&ud, &format!("fetch_file {secrets_sha} '"));
    assert!(ud.contains(&format!("SOURCES='{url}/secrets'")), "{ud}");
    assert!(ud.contains("/etc/kiln/signing.pub"), "{ud}");
    assert!(ud.contains("hostname: etcd1"), "{ud}");
    let script_file = fx.dir.join("net-runcmd.sh");
    fs::write(&script_file, runcmd_of(&ud_file)).unwrap();
    let r = tool("shellcheck", "shellcheck")
        .args(["-s", "sh"])
        .arg(&script_file)
        .output()
        .unwrap();
    assert!(r.status.success(), "shellcheck: {r:?}");
    // Another host's seed names its own secrets URL, never etcd1's.
    let (_, etcd2) = get_text(&format!(
        "{url}/ipxe/{}",
        hexhyp(&m["hosts"]["etcd2"]["mac"])
    ));
    let etcd2_seed = token_after(&etcd2, &format!("s={url}/seed/"));
    let (_, etcd2_ud) = get_text(&format!("{url}/seed/{etcd2_seed}/user-data"));
    assert!(!etcd2_ud.contains(&secrets_token) && !etcd2.contains(&secrets_token));
    assert!(
        !script.contains(&secrets_token),
        "the iPXE script carries only the seed URL"
    );

    // A guessed seed or secrets token gets nothing.
    let guess = sha256(b"guess");
    assert_eq!(get(&format!("{url}/seed/{guess}/user-data")).0, 404);
    assert_eq!(get(&format!("{url}/secrets/{guess}")).0, 404);
    assert_eq!(
        get(&format!("{url}/secrets/{}", &secrets_token[..32])).0,
        404
    );
    assert_eq!(get(&format!("{url}/seed/{secrets_token}/user-data")).0, 404);

    // The secrets URL: once, byte for byte; then refused.
    let (code, body) = get(&format!("{url}/secrets/{secrets_token}"));
    assert_eq!(code, 200);
    assert_eq!(
        body,
        fs::read(out.join("hosts/etcd1/secrets.tar.gz")).unwrap()
    );
    let (code, body) = get(&format!("{url}/secrets/{secrets_token}"));
    assert_eq!(code, 410);
    assert!(!body.starts_with(&[0x1f, 0x8b]));
    let log = s.stop();

    // The access log: a record per request, with client, MAC when known, status and bytes;
    // no token in it.
    let all = serde_json::to_string(&log).unwrap();
    assert!(
        !all.contains(&secrets_token) && !all.contains(&seed_token),
        "{all}"
    );
    let find =
        |f: &dyn Fn(&Value) -> bool| -> Vec<&Value> { log.iter().filter(|r| f(r)).collect() };
    let ipxe = find(&|r| r["path"] == format!("/ipxe/{etcd1_mac}"));
    assert_eq!(ipxe[0]["mac"], etcd1_mac.as_str(), "{ipxe:?}");
    assert_eq!(
        (ipxe[0]["status"].as_u64(), ipxe[0]["host"].as_str()),
        (Some(200), Some("etcd1"))
    );
    assert_eq!(ipxe[0]["client"], "127.0.0.1");
    assert_eq!(ipxe[0]["bytes"].as_u64(), Some(script.len() as u64));
    let unknown_rec = find(&|r| r["path"] == "/ipxe/02-00-00-00-00-01");
    assert!(
        unknown_rec[0]["note"]
            .as_str()
            .unwrap()
            .starts_with("unknown MAC 02-00-00-00-00-01"),
        "{unknown_rec:?}"
    );
    let secrets: Vec<&Value> = find(&|r| r["path"].as_str().unwrap().starts_with("/secrets/"));
    let statuses: Vec<u64> = secrets
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [404, 404, 200, 410], "{secrets:?}");
    assert_eq!(
        secrets[2]["path"],
        format!("/secrets/{}…", &secrets_token[..8])
    );
    assert_eq!(secrets[2]["complete"], true);
    assert!(
        secrets[3]["note"]
            .as_str()
            .unwrap()
            .starts_with("refused: etcd1's one-time secrets URL was already used at "),
        "{secrets:?}"
    );
    // A blob fetched from the address that asked for etcd1's script carries the MAC learnt last.
    let blob =
        find(&|r| r["path"].as_str().unwrap().starts_with("/blobs/sha256/") && r["status"] == 200);
    assert!(
        blob[0]["mac"].is_null(),
        "asked before any /ipxe/ request: {blob:?}"
    );

    // A restart remembers the use and keeps the other hosts' URLs.
    let s = Serve::start(&out, &state, &["--netboot", nb_arg]);
    let url = s.url.clone();
    assert_eq!(get(&format!("{url}/secrets/{secrets_token}")).0, 410);
    let (_, used) = get_text(&format!("{url}/ipxe/{etcd1_mac}"));
    assert!(
        used.contains("its one-time secrets URL was used at ")
            && used.contains("--reissue etcd1")
            && !has_token(&used),
        "{used}"
    );
    let (_, etcd2_again) = get_text(&format!(
        "{url}/ipxe/{}",
        hexhyp(&m["hosts"]["etcd2"]["mac"])
    ));
    assert_eq!(
        token_after(&etcd2_again, &format!("s={url}/seed/")),
        etcd2_seed
    );
    drop(s);

    // --reissue: new URLs for etcd1, once again; the old ones are gone.
    let s = Serve::start(&out, &state, &["--netboot", nb_arg, "--reissue", "etcd1"]);
    let url = s.url.clone();
    let (_, fresh) = get_text(&format!("{url}/ipxe/{etcd1_mac}"));
    let fresh_seed = token_after(&fresh, &format!("s={url}/seed/"));
    assert_ne!(fresh_seed, seed_token);
    assert_eq!(get(&format!("{url}/seed/{seed_token}/user-data")).0, 404);
    let (_, ud) = get_text(&format!("{url}/seed/{fresh_seed}/user-data"));
    let fresh_secrets = token_after(&ud, &format!("fetch_file {secrets_sha} '"));
    assert_eq!(get(&format!("{url}/secrets/{secrets_token}")).0, 404);
    assert_eq!(get(&format!("{url}/secrets/{fresh_secrets}")).0, 200);
    assert_eq!(get(&format!("{url}/secrets/{fresh_secrets}")).0, 410);

    // Eight requests for one unused URL at once: one gets the secrets, the others nothing.
    let (_, etcd3) = get_text(&format!(
        "{url}/ipxe/{}",
        hexhyp(&m["hosts"]["etcd3"]["mac"])
    ));
    let etcd3_seed = token_after(&etcd3, &format!("s={url}/seed/"));
    let (_, ud) = get_text(&format!("{url}/seed/{etcd3_seed}/user-data"));
    let etcd3_secrets = m["outputs"]["hosts/etcd3/secrets.tar.gz"]["sha256"]
        .as_str()
        .unwrap();
    let secrets_url = format!(
        "{url}/secrets/{}",
        token_after(&ud, &format!("fetch_file {etcd3_secrets} '"))
    );
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let u = secrets_url.clone();
            std::thread::spawn(move || get(&u))
        })
        .collect();
    let mut codes: Vec<u16> = racers.into_iter().map(|t| t.join().unwrap().0).collect();
    codes.sort();
    assert_eq!(codes, [200, 410, 410, 410, 410, 410, 410, 410]);
    drop(s);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(state.join("tokens.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn serve_refuses_a_broken_build_a_wrong_key_a_seedless_or_pulled_folder_and_a_bad_netboot_folder() {
    let fx = Fixture::new(false);
    let out = build_every_seed_form(&fx);
    let m = manifest(&out);
    let state = fx.dir.join("serve-state");
    let run = |args: &[&str]| {
        kiln()
            .arg("serve")
            .arg(&out)
            .args(["--listen", "127.0.0.1:0", "--state"])
            .arg(&state)
            .args(args)
            .output()
            .unwrap()
    };
    let nb = fx.dir.join("half-netboot");
    fs::create_dir_all(&nb).unwrap();
    fs::write(nb.join("vmlinuz"), b"kernel").unwrap();
    let r = run(&["--netboot", nb.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(&format!("netboot folder {}: no initrd.img", nb.display())),
        "{err}"
    );
    let r = run(&["--reissue", "etcd9"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("--reissue etcd9: the build has no host etcd9 (hosts: etcd1, etcd2"),
        "{err}"
    );

    // Signed by another key than the one given.
    let other = fx.dir.join("other.pub");
    let r = tool("sh", "dash")
        .arg("-c")
        .arg("openssl ecparam -genkey -name prime256v1 | openssl ec -pubout -out \"$1\"")
        .args(["-", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    let r = run(&["--key", other.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(&format!(
            "{}: signatures do not verify, refusing to serve it",
            out.display()
        )),
        "{err}"
    );

    // A build without seed folders has nothing to hand a network-booted host.
    kiln()
        .current_dir(&fx.dir)
        .args([
            "build",
            "--seed",
            "iso",
            "--out",
            "iso-only",
            "cluster.toml",
        ])
        .assert()
        .success();
    let r = kiln()
        .arg("serve")
        .arg(fx.dir.join("iso-only/lab"))
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(fx.dir.join("iso-state"))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("host etcd1 has no seed folder"), "{err}");
    assert!(err.contains("build with --seed including dir"), "{err}");

    // One byte changed in a bundle: refused before anything listens, naming the file.
    let file = m["bundles"].as_object().unwrap().values().next().unwrap()["file"]
        .as_str()
        .unwrap()
        .to_string();
    let path = out.join(&file);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, bytes).unwrap();
    let r = run(&[]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(&format!(
            "{} fails verification, refusing to serve it",
            out.display()
        )),
        "{err}"
    );
    assert!(err.contains(&file), "{err}");
    assert!(r.stdout.is_empty());

    // A `kiln pull` folder (its marker) has no hosts to serve.
    fs::write(out.join("PULLED.json"), b"{}").unwrap();
    let r = run(&[]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(&format!(
            "{}: a `kiln pull` folder has no hosts/",
            out.display()
        )),
        "{err}"
    );
}

#[test]
fn the_text_log_has_a_line_per_request_with_time_client_mac_path_status_and_bytes() {
    let fx = Fixture::new(false);
    let out = build_every_seed_form(&fx);
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("serve")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(fx.dir.join("state"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut status = String::new();
    for _ in 0..3 {
        stdout.read_line(&mut status).unwrap();
    }
    assert!(
        status.starts_with(&format!(
            "kiln serve: {} (cluster lab, build ",
            out.display()
        )),
        "{status}"
    );
    assert!(status.contains("6 hosts, "), "{status}");
    assert!(
        status.contains("(new URLs: etcd1, etcd2, etcd3, lb1, lb2, runtime1; reissued: none)"),
        "{status}"
    );
    let url = status
        .lines()
        .find_map(|l| l.strip_prefix("kiln serve: listening on "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("{status}"))
        .to_string();
    let (_, boot) = get(&format!("{url}/boot.ipxe"));
    assert_eq!(get(&format!("{url}/ipxe/02-00-00-00-00-01")).0, 200);
    assert_eq!(get(&format!("{url}/nothing")).0, 404);
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut log = String::new();
    stdout.read_to_string(&mut log).unwrap();
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 3, "{log}");
    // time client mac method path status bytes …
    assert_eq!(lines[0][0].len(), "2026-01-01T00:00:00Z".len(), "{log}");
    assert_eq!(
        lines[0][1..7],
        [
            "127.0.0.1",
            "-",
            "GET",
            "/boot.ipxe",
            "200",
            &boot.len().to_string()
        ],
        "{log}"
    );
    assert_eq!(
        lines[1][1..6],
        [
            "127.0.0.1",
            "02-00-00-00-00-01",
            "GET",
            "/ipxe/02-00-00-00-00-01",
            "200"
        ]
    );
    assert!(
        log.lines()
            .nth(1)
            .unwrap()
            .contains("(unknown MAC 02-00-00-00-00-01: no host of cluster lab has it"),
        "{log}"
    );
    // The address asked for a MAC's script before: the MAC stays with it.
    assert_eq!(
        lines[2][1..6],
        ["127.0.0.1", "02-00-00-00-00-01", "GET", "/nothing", "404"]
    );
}
