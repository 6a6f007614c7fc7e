//! Every kind of bad input gets a precise error (file, line:column, key) and changes nothing.

use std::fs;

use crate::common::{kiln, kiln_in, tree_state, Fixture};

/// `cluster.toml:LINE:COL` of the last occurrence of `needle` in `text`.
pub(crate) fn pos_of(text: &str, needle: &str) -> String {
    let off = text
        .rfind(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the edited file"));
    let line = text[..off].matches('\n').count() + 1;
    let col = off - text[..off].rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    format!("cluster.toml:{line}:{col}")
}

struct Case {
    name: &'static str,
    edit: fn(String) -> String,
    /// Where the error must point (a needle in the edited cluster.toml), if anywhere.
    at: Option<&'static str>,
    expect: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "unknown key",
            edit: |t| t.replace("name = \"lab\"\n", "name = \"lab\"\nnmae = \"lab\"\n"),
            at: Some("nmae"),
            expect: &["unknown field `nmae`"],
        },
        Case {
            name: "unknown key in a host",
            edit: |t| t.replacen("roles = [\"etcd\"]", "rolez = [\"etcd\"]", 1),
            at: None,
            expect: &["unknown field `rolez`"],
        },
        Case {
            name: "duplicate key",
            edit: |t| t.replace("arch = \"amd64\"\n", "arch = \"amd64\"\narch = \"arm64\"\n"),
            at: None,
            expect: &["duplicate key"],
        },
        Case {
            name: "wrong type",
            edit: |t| {
                t.replace(
                    "arch = \"amd64\"\n",
                    "arch = \"amd64\"\ngeneration = \"one\"\n",
                )
            },
            at: Some("\"one\""),
            expect: &[
                "`generation`: invalid type: string \"one\", expected a whole number from 0 to",
            ],
        },
        Case {
            name: "invalid IP",
            edit: |t| t.replace("\"10.77.0.12\"", "\"10.77.0.300\""),
            at: Some("\"10.77.0.300\""),
            expect: &["`host[1].ip`", "expected an IP address"],
        },
        Case {
            name: "invalid CIDR prefix",
            edit: |t| t.replace("\"10.244.0.0/16\"", "\"10.244.0.0/33\""),
            at: Some("\"10.244.0.0/33\""),
            expect: &["`network.pod-cidr`", "longer than 32 bits"],
        },
        Case {
            name: "CIDR with host bits",
            edit: |t| t.replace("\"10.96.0.0/12\"", "\"10.96.0.1/12\""),
            at: Some("\"10.96.0.1/12\""),
            expect: &["`network.service-cidr`", "host bits"],
        },
        Case {
            name: "invalid MAC",
            edit: |t| t.replace("\"52:54:00:77:00:12\"", "\"52:54:00:77:00\""),
            at: Some("\"52:54:00:77:00\""),
            expect: &["`host[1].mac`", "MAC address"],
        },
        Case {
            name: "invalid hostname",
            edit: |t| t.replace("\"etcd2\"", "\"Etcd_2\""),
            at: Some("\"Etcd_2\""),
            expect: &["`host[1].name`", "not a valid host name"],
        },
        Case {
            name: "duplicate host name",
            edit: |t| t.replace("\"etcd2\"", "\"etcd1\""),
            at: None,
            expect: &[
                "`host[1].name`",
                "duplicate host name \"etcd1\" (also host[0])",
            ],
        },
        Case {
            name: "duplicate IP",
            edit: |t| t.replace("\"10.77.0.12\"", "\"10.77.0.11\""),
            at: None,
            expect: &["`host[1].ip`", "duplicate IP 10.77.0.11 (also host[0])"],
        },
        Case {
            name: "duplicate MAC",
            edit: |t| t.replace("\"52:54:00:77:00:12\"", "\"52:54:00:77:00:11\""),
            at: None,
            expect: &["`host[1].mac`", "duplicate MAC"],
        },
        Case {
            name: "pod network overlaps service network",
            edit: |t| t.replace("\"10.244.0.0/16\"", "\"10.96.0.0/16\""),
            at: Some("\"10.96.0.0/12\""),
            expect: &["`network.service-cidr`", "overlaps network.pod-cidr"],
        },
        Case {
            name: "pod network overlaps host network",
            edit: |t| t.replace("\"10.244.0.0/16\"", "\"10.0.0.0/8\""),
            at: Some("\"10.0.0.0/8\""),
            expect: &["`network.pod-cidr`", "overlaps network.host-cidrs[0]"],
        },
        Case {
            name: "cluster DNS outside the service network",
            edit: |t| t.replace("\"10.96.0.10\"", "\"10.200.0.10\""),
            at: Some("\"10.200.0.10\""),
            expect: &["`network.cluster-dns`", "outside the service network"],
        },
        Case {
            name: "VIP equal to a host IP",
            edit: |t| t.replace("vip = \"10.77.0.100\"", "vip = \"10.77.0.21\""),
            at: Some("\"10.77.0.21\"\nport"),
            expect: &["`lb.vip`", "already the address of host \"runtime1\""],
        },
        Case {
            name: "VIP outside every host network",
            edit: |t| t.replace("vip = \"10.77.0.100\"", "vip = \"192.168.1.1\""),
            at: Some("\"192.168.1.1\""),
            expect: &["`lb.vip`", "outside every network"],
        },
        Case {
            name: "host with no role",
            edit: |t| t.replace("roles = [\"runtime\"]", "roles = []"),
            at: None,
            expect: &["`host[3].roles`", "has no role"],
        },
        Case {
            name: "unknown role",
            edit: |t| t.replace("roles = [\"runtime\"]", "roles = [\"runtim\"]"),
            at: Some("\"runtim\""),
            expect: &["`host[3].roles[0]`", "unknown role \"runtim\""],
        },
        Case {
            name: "master without etcd",
            edit: |t| {
                let t = t.replace("roles = [\"etcd\"]", "roles = [\"runtime\"]");
                let i = t.rfind("roles = [\"runtime\"]").unwrap();
                format!(
                    "{}roles = [\"master\"]{}",
                    &t[..i],
                    &t[i + "roles = [\"runtime\"]".len()..]
                )
            },
            at: None,
            expect: &["role \"master\" requires a host with role etcd"],
        },
        Case {
            name: "node without a master or API endpoint",
            edit: |t| t.replace("roles = [\"runtime\"]", "roles = [\"node\"]"),
            at: Some("[\"node\"]"),
            expect: &[
                "`host[3].roles`",
                "role \"node\" requires a host with role master or `api.endpoint`",
            ],
        },
        Case {
            name: "lb without backends",
            edit: |t| {
                let kept: Vec<&str> = t.lines().filter(|l| !l.starts_with("backends =")).collect();
                kept.join("\n")
            },
            at: None,
            expect: &["role \"lb\" requires a host with role master or `lb.backends`"],
        },
        Case {
            name: "unknown OS",
            edit: |t| t.replace("os = \"debian12\"", "os = \"centos8\""),
            at: Some("\"centos8\""),
            expect: &["`os`", "unknown OS \"centos8\""],
        },
        Case {
            name: "calico without its version",
            edit: |t| t.replace("cni = \"flannel\"", "cni = \"calico\""),
            at: Some("\"calico\""),
            expect: &["`network.cni`", "needs versions.calico"],
        },
        Case {
            name: "unknown arch",
            edit: |t| t.replace("arch = \"amd64\"", "arch = \"x86\""),
            at: Some("\"x86\""),
            expect: &["`arch`", "unknown arch \"x86\""],
        },
        Case {
            name: "unknown overlay",
            edit: |t| {
                t.replace(
                    "overlays = [\"site-example\"]",
                    "overlays = [\"site-exampel\"]",
                )
            },
            at: Some("\"site-exampel\""),
            expect: &[
                "`overlays[0]`",
                "unknown overlay \"site-exampel\"; available: calico, site-example",
            ],
        },
        Case {
            name: "version key missing",
            edit: |t| t.replace("runc = \"1.1.5\"\n", ""),
            at: None,
            expect: &["artifact \"runc\" needs `versions.runc` in cluster.toml"],
        },
        Case {
            name: "version with a leading v",
            edit: |t| t.replace("\"1.1.5\"", "\"v1.1.5\""),
            at: Some("\"v1.1.5\""),
            expect: &["`versions.runc`", "no leading 'v'"],
        },
        Case {
            name: "unknown source kind",
            edit: |t| t.replace("sources = [\"file\"]", "sources = [\"ftp\"]"),
            at: Some("\"ftp\""),
            expect: &[
                "`sources[0]`",
                "unknown source kind \"ftp\"; expected one of https, http, file, apt",
            ],
        },
        Case {
            name: "unknown image source kind",
            edit: |t| {
                t.replace(
                    "image-sources = [\"assemble\"]",
                    "image-sources = [\"oci\"]",
                )
            },
            at: Some("\"oci\""),
            expect: &[
                "`image-sources[0]`",
                "unknown image source kind \"oci\"; expected registry or assemble",
            ],
        },
        Case {
            name: "source kind not in the catalog",
            edit: |t| t.replace("sources = [\"file\"]", "sources = [\"https\"]"),
            at: None,
            expect: &["has sources [file] but cluster.toml allows only [https]"],
        },
        Case {
            name: "misspelt key in [image]",
            edit: |t| format!("{t}\n[image]\npackagez = [\"less\"]\n"),
            at: Some("packagez"),
            expect: &["unknown field `packagez`"],
        },
        Case {
            name: "image package that is not a package name",
            edit: |t| format!("{t}\n[image]\npackages = [\"less\", \"Less Pager\"]\n"),
            at: Some("\"Less Pager\""),
            expect: &[
                "`image.packages[1]`",
                "\"Less Pager\" is not a package name",
            ],
        },
        Case {
            name: "image package listed twice",
            edit: |t| format!("{t}\n[image]\npackages = [\"less\", \"less\"]\n"),
            at: Some("\"less\""),
            expect: &["`image.packages[1]`", "\"less\" is listed twice"],
        },
        Case {
            name: "image of an OS the catalog has no [os-image] for",
            edit: |t| format!("{t}\n[image]\n"),
            at: None,
            expect: &["`image`", "catalog.toml has no [os-image.debian12]"],
        },
        Case {
            name: "image of an OS other than debian12",
            edit: |t| {
                format!(
                    "{}\n[image]\n",
                    t.replace("os = \"debian12\"", "os = \"ubuntu2404\"")
                )
            },
            at: None,
            expect: &[
                "`image`",
                "kiln image builds debian12 images only (this cluster's os is ubuntu2404)",
            ],
        },
        Case {
            name: "image of an arch other than amd64",
            edit: |t| {
                format!(
                    "{}\n[image]\n",
                    t.replace("arch = \"amd64\"", "arch = \"arm64\"")
                )
            },
            at: None,
            expect: &[
                "`image`",
                "kiln image builds amd64 images only",
                "this cluster's arch is arm64",
            ],
        },
        Case {
            name: "leaf outlives CA",
            edit: |t| format!("{t}\n[pki]\nca-days = 10\nleaf-days = 20\n"),
            at: Some("20\n"),
            expect: &["`pki.leaf-days`", "longer than the CA's"],
        },
    ]
}

#[test]
fn every_bad_cluster_toml_is_refused_precisely_and_changes_nothing() {
    let mut failures = Vec::new();
    for case in cases() {
        let fx = Fixture::small();
        fx.edit(case.edit);
        let text = fs::read_to_string(fx.cluster()).unwrap();
        let before = tree_state(&fx.dir);
        for cmd in ["check", "build"] {
            let (code, stderr) = kiln_in(&fx.dir, &[cmd, "cluster.toml"]);
            let mut want: Vec<String> = case.expect.iter().map(|s| s.to_string()).collect();
            if let Some(needle) = case.at {
                want.push(pos_of(&text, needle));
            }
            let missing: Vec<&String> = want
                .iter()
                .filter(|w| !stderr.contains(w.as_str()))
                .collect();
            if code != Some(1) || !missing.is_empty() {
                failures.push(format!(
                    "{} ({cmd}): exit {code:?}, missing {missing:?} in:\n{stderr}",
                    case.name
                ));
            }
            if tree_state(&fx.dir) != before {
                failures.push(format!("{} ({cmd}): files changed on disk", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn even_etcd_count_is_a_warning_not_an_error() {
    let fx = Fixture::small();
    fx.edit(|t| t.replace("roles = [\"runtime\"]", "roles = [\"etcd\"]"));
    let out = kiln()
        .current_dir(&fx.dir)
        .args(["check", "cluster.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: `host`: 4 etcd members"),
        "{stderr}"
    );
}

#[test]
fn version_without_pin_or_checksum_source_is_refused_at_its_key() {
    let fx = Fixture::small();
    let cat = fx.dir.join("catalog/catalog.toml");
    let t = fs::read_to_string(&cat).unwrap();
    let t = t.replacen("[[artifact.etcd.source]]\nkind = \"file\"\npath = \"files/etcd-{version}-{arch}\"", "[[artifact.etcd.source]]\nkind = \"https\"\nurl = \"https://example.invalid/etcd-{version}\"", 1);
    fs::write(&cat, t).unwrap();
    fx.edit(|t| {
        t.replace("sources = [\"file\"]", "sources = [\"file\", \"https\"]")
            .replace("etcd = \"3.4.23\"", "etcd = \"9.9.9\"")
    });
    let text = fs::read_to_string(fx.cluster()).unwrap();
    let out = kiln()
        .current_dir(&fx.dir)
        .args(["check", "cluster.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&pos_of(&text, "\"9.9.9\"")), "{stderr}");
    assert!(
        stderr.contains("`versions.etcd`: etcd 9.9.9 (amd64) has no pin"),
        "{stderr}"
    );
    assert!(stderr.contains("no checksum source"), "{stderr}");
}

fn profile_case(file: &str, from: &str, to: &str, expect: &[&str]) {
    let fx = Fixture::small();
    let p = fx.dir.join(file);
    let t = fs::read_to_string(&p).unwrap();
    assert!(t.contains(from), "{from:?} not in {file}");
    fs::write(&p, t.replacen(from, to, 1)).unwrap();
    let before = tree_state(&fx.dir);
    let out = kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for e in expect {
        assert!(stderr.contains(e), "missing {e:?} in:\n{stderr}");
    }
    assert_eq!(tree_state(&fx.dir), before, "files changed on disk");
}

#[test]
fn template_with_undefined_variable_names_template_line_and_variable() {
    profile_case(
        "profiles/etcd/etcd.env.hbs",
        "ETCD_NAME={{host.name}}",
        "ETCD_NAME={{host.nmae}}",
        &[
            "template profiles/etcd/etcd.env.hbs: line 2",
            "variable `host.nmae` is not defined",
        ],
    );
}

#[test]
fn misspelt_profile_key_is_refused() {
    profile_case(
        "profiles/etcd/profile.toml",
        "units = ",
        "unitz = ",
        &["profiles/etcd/profile.toml:", "unknown field `unitz`"],
    );
}

#[test]
fn bad_mode_in_profile_is_refused() {
    profile_case(
        "profiles/runtime/profile.toml",
        "dest = \"/etc/crictl.yaml\"",
        "dest = \"/etc/crictl.yaml\"\nmode = \"0855\"",
        &["`template[2].mode`", "octal file mode"],
    );
}

#[test]
fn wrong_type_in_profile_names_its_key() {
    profile_case(
        "profiles/runtime/profile.toml",
        "dest = \"/etc/crictl.yaml\"",
        "dest = \"/etc/crictl.yaml\"\nmode = 644",
        &[
            "profiles/runtime/profile.toml:",
            "`template[2].mode`: invalid type",
        ],
    );
}

#[test]
fn relative_destination_is_refused() {
    profile_case(
        "profiles/etcd/profile.toml",
        "dest = \"/usr/local/bin/etcd\"",
        "dest = \"usr/local/bin/../etcd\"",
        &["`artifact[0].dest`", "must be an absolute path"],
    );
}

#[test]
fn missing_cluster_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = kiln()
        .current_dir(tmp.path())
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.toml: error: cannot read"));
    assert!(fs::read_dir(tmp.path()).unwrap().next().is_none());
}

#[test]
fn usage_errors_exit_2() {
    kiln().arg("bild").assert().code(2);
    kiln().args(["build", "--bogus"]).assert().code(2);
}

#[test]
fn a_unit_running_a_binary_no_bundle_ships_fails_naming_both() {
    profile_case(
        "profiles/etcd/etcd.service.hbs",
        "ExecStart=/usr/local/bin/etcd",
        "ExecStart=/usr/local/bin/etcd3",
        &["the plan is incomplete", "etcd1: /etc/systemd/system/etcd.service (in etcd-debian12) refers to /usr/local/bin/etcd3"],
    );
}

#[test]
fn a_config_naming_a_certificate_nobody_issues_fails_naming_both() {
    profile_case(
        "profiles/etcd/etcd.env.hbs",
        "/etc/kubernetes/pki/etcd/peer.key",
        "/etc/kubernetes/pki/etcd/peer-typo.key",
        &["etcd2: /etc/kiln/etcd.env (in host etcd2) refers to /etc/kubernetes/pki/etcd/peer-typo.key"],
    );
}

/// `file:LINE:COL: error: not valid UTF-8 (byte offset N)` for a bad byte at `offset` of `bytes`.
fn utf8_error_at(file: &str, bytes: &[u8], offset: usize) -> String {
    let before = String::from_utf8_lossy(&bytes[..offset]);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("{file}:{line}:{col}: error: not valid UTF-8 (byte offset {offset})")
}

#[test]
fn bytes_that_are_not_utf8_are_refused_at_their_line_column_and_offset_in_every_input() {
    // A bad byte in a comment, in a value, a file of garbage, and a valid file followed by
    // garbage; in cluster.toml, a profile, a template, an overlay, the catalog and kiln.lock.
    type Edit = fn(&[u8]) -> (Vec<u8>, usize);
    let in_comment: Edit = |t| {
        let mut out = t.to_vec();
        let at = out.len() + "# caf".len();
        out.extend_from_slice(b"# caf\xe9 au lait\n");
        (out, at)
    };
    let in_value: Edit = |t| {
        let at = t
            .windows(2)
            .position(|w| w == b"\"\n")
            .expect("a string value");
        let mut out = t[..at].to_vec();
        out.extend_from_slice(b"\xc3");
        out.extend_from_slice(&t[at..]);
        (out, at)
    };
    let garbage: Edit = |_| {
        // 10 MB whose first bytes are fine and whose first invalid byte is at 1000.
        let mut out = vec![b'#'; 10 << 20];
        out[999] = b'\n';
        out[1000] = 0xff;
        (out, 1000)
    };
    let trailing: Edit = |t| {
        let mut out = t.to_vec();
        let at = out.len();
        out.extend_from_slice(
            &crate::common::noise(7, 4096)
                .iter()
                .map(|b| b | 0x80)
                .collect::<Vec<_>>(),
        );
        (out, at)
    };
    let files = [
        ("cluster.toml", in_value),
        ("cluster.toml", garbage),
        ("cluster.toml", trailing),
        ("profiles/etcd/profile.toml", in_comment),
        ("profiles/etcd/etcd.env.hbs", in_comment),
        ("overlays/site-example/overlay.toml", in_value),
        ("catalog/catalog.toml", trailing),
        ("kiln.lock", in_comment),
    ];
    let mut failures = Vec::new();
    for (file, edit) in files {
        let fx = Fixture::small();
        if file == "kiln.lock" {
            fx.lock();
        }
        let path = fx.dir.join(file);
        let (bytes, at) = edit(&fs::read(&path).unwrap());
        fs::write(&path, &bytes).unwrap();
        let want = utf8_error_at(file, &bytes, at);
        let before = tree_state(&fx.dir);
        // `check` does not read the lock.
        let cmds: &[&str] = if file == "kiln.lock" {
            &["build"]
        } else {
            &["check", "build"]
        };
        for cmd in cmds {
            let (code, stderr) = kiln_in(&fx.dir, &[cmd, "cluster.toml"]);
            if code != Some(1) || !stderr.contains(&want) {
                failures.push(format!(
                    "{file} ({cmd}): exit {code:?}, want {want:?} in:\n{stderr}"
                ));
            }
        }
        if tree_state(&fx.dir) != before {
            failures.push(format!("{file}: files changed on disk"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
