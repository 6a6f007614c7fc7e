//! Seeds' runcmds installing from kiln serve: a network seed (secrets by their one-time URL)
//! and a disk seed whose bundle source is kiln serve.

use std::collections::BTreeMap;
use std::fs;

use serde_json::Value;

use super::*;
use crate::common::Fixture;
use crate::seeds::{build_every_seed_form, run_seed_script, runcmd_of, tool};

#[test]
fn a_network_seed_takes_its_secrets_once_and_install_sh_and_bundles_from_kiln_serve_by_digest() {
    let fx = Fixture::new(false);
    fx.edit(|t| {
        t.replacen(
            "[network]",
            "[seeds]\nhealth-wait-seconds = 77\n\n[network]",
            1,
        )
    });
    let out = build_every_seed_form(&fx);
    let m = manifest(&out);
    let state = fx.dir.join("serve-state");
    let s = Serve::start(
        &out,
        &state,
        &["--netboot", netboot(&fx.dir).to_str().unwrap()],
    );
    let url = s.url.clone();
    // kiln serve hands out what it verified, even once the folder is gone (a rebuild swaps it).
    let key = fx.dir.join("signing.pub");
    fs::copy(out.join("signing.pub"), &key).unwrap();
    fs::remove_dir_all(&out).unwrap();
    let (_, script) = get_text(&format!(
        "{url}/ipxe/{}",
        hexhyp(&m["hosts"]["etcd1"]["mac"])
    ));
    let seed_token = token_after(&script, &format!("s={url}/seed/"));
    let ud_file = fx.dir.join("user-data");
    let (code, ud) = get(&format!("{url}/seed/{seed_token}/user-data"));
    assert_eq!(code, 200);
    fs::write(&ud_file, ud).unwrap();
    let runcmd = runcmd_of(&ud_file);
    // The disk seed's health wait goes with it.
    assert!(
        runcmd.contains("KILN_HEALTH_WAIT=77 sh \"$i\" --dir \"$d\""),
        "{runcmd}"
    );

    // No seed medium: the runcmd finds nothing at cloud-init's seed folder.
    let empty = fx.dir.join("no-seed");
    fs::create_dir_all(&empty).unwrap();
    let root = fx.dir.join("root");
    fs::create_dir_all(&root).unwrap();
    let text = run_seed_script(&runcmd, &empty, &key, &root, "etcd1");
    let verify: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("KILN verify ok host=etcd1 "))
        .collect();
    // Both runs verify: the second finds the secrets kept by their digest (the URL would refuse).
    assert_eq!(verify.len(), 2, "{text}");
    assert!(!text.contains("KILN seed fail"), "{text}");
    assert!(
        text.contains(&format!("install.sh: install.sh fetched from {url}\n")),
        "{text}"
    );
    // The secrets' one-time token is in the runcmd, never in what it prints.
    let token = runcmd
        .split_whitespace()
        .skip_while(|w| *w != "fetch_file")
        .nth(2)
        .map(|t| t.trim_matches('\''))
        .expect("the runcmd fetches the secrets with fetch_file SHA 'TOKEN'");
    assert!(token.len() >= 32, "{token}");
    assert!(
        text.contains(&format!(
            "install.sh: secrets.tar.gz fetched from {url}/secrets\n"
        )),
        "{text}"
    );
    assert!(
        !text.contains(token),
        "the secrets token was printed:\n{text}"
    );
    assert!(
        text.contains("install.sh: HOST and BUNDLES signed by /etc/kiln/signing.pub"),
        "{text}"
    );
    let bundles = m["hosts"]["etcd1"]["bundles"].as_array().unwrap();
    for b in bundles {
        let name = b.as_str().unwrap().trim_start_matches("bundles/");
        assert!(
            verify[0].contains(&format!("{name}@{url}")),
            "{name}: {text}"
        );
    }
    assert!(
        !verify[1].contains("fetched="),
        "the second run fetches nothing: {text}"
    );
    let install_sha = m["outputs"]["install.sh"]["sha256"].as_str().unwrap();
    assert!(
        text.lines().any(|l| l == format!("{install_sha}.sh")),
        "{text}"
    );

    // The same runcmd on another machine (nothing kept in /var/lib): the used URL refuses it,
    // and the runcmd stops before install.sh runs.
    let r = tool("unshare", "util-linux")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs kiln /var/lib || exit 99; dash -c \"$1\" 2>&1; echo \"exit $?\"")
        .args(["-", &runcmd])
        .output()
        .unwrap();
    let replay = String::from_utf8_lossy(&r.stdout);
    assert!(
        replay.contains("KILN seed fail secrets ")
            && replay.contains("410")
            && replay.ends_with("exit 1\n")
            && !replay.contains("KILN verify"),
        "{replay}"
    );
    let log = s.stop();
    let secrets: Vec<&Value> = log
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/secrets/"))
        .collect();
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    assert_eq!(
        (
            secrets[0]["status"].as_u64(),
            secrets[0]["complete"].as_bool()
        ),
        (Some(200), Some(true))
    );
    assert_eq!(secrets[1]["status"].as_u64(), Some(410));
    // install.sh and every bundle went out of kiln serve by the plain names http sources use.
    let mut served: BTreeMap<String, u64> = BTreeMap::new();
    for r in &log {
        if r["status"] == 200 {
            *served
                .entry(r["path"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(served.get("/install.sh"), Some(&1), "{served:?}");
    for b in bundles {
        assert_eq!(
            served.get(&format!("/{}", b.as_str().unwrap())),
            Some(&1),
            "{served:?}"
        );
    }
}

#[test]
fn a_disk_seed_whose_bundle_source_is_kiln_serve_installs_from_it_unchanged() {
    // A port the OS chose, free again for kiln serve: the build must name it in the seeds.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let source = format!("http://127.0.0.1:{port}");
    let fx = Fixture::new(false);
    fx.edit(|t| {
        t.replacen(
            "[network]",
            &format!(
                "[seeds]\ncarry-bundles = false\nbundle-sources = [\"{source}\"]\n\n[network]"
            ),
            1,
        )
    });
    let out = build_every_seed_form(&fx);
    let s = Serve::start_on(
        &format!("127.0.0.1:{port}"),
        &out,
        &fx.dir.join("state"),
        &[],
    );
    assert_eq!(s.url, source);
    let seed = out.join("hosts/etcd1/seed");
    let root = fx.dir.join("root");
    fs::create_dir_all(&root).unwrap();
    let text = run_seed_script(
        &runcmd_of(&seed.join("user-data")),
        &seed,
        &out.join("signing.pub"),
        &root,
        "etcd1",
    );
    assert!(
        text.contains(&format!("install.sh: install.sh fetched from {source}\n")),
        "{text}"
    );
    let verify = text
        .lines()
        .find(|l| l.starts_with("KILN verify ok host=etcd1 "))
        .unwrap_or_else(|| panic!("{text}"));
    let m = manifest(&out);
    for b in m["hosts"]["etcd1"]["bundles"].as_array().unwrap() {
        let name = b.as_str().unwrap().trim_start_matches("bundles/");
        assert!(
            verify.contains(&format!("{name}@{source}")),
            "{name}: {text}"
        );
    }
    let log = s.stop();
    assert!(log
        .iter()
        .all(|r| !r["path"].as_str().unwrap().starts_with("/secrets/")));
}
