//! Shared seeds and helpers.

use std::collections::BTreeMap;

use cloud_init_config::*;

/// A user-data document using every field kiln writes.
pub fn rich_config() -> CloudConfig {
    CloudConfig {
        hostname: Some("on".into()),
        fqdn: Some("on.cluster.example".into()),
        prefer_fqdn_over_hostname: Some(false),
        manage_etc_hosts: Some(ManageEtcHosts::Localhost),
        users: vec![User {
            name: "kiln".into(),
            groups: vec!["adm".into(), "sudo".into()],
            shell: Some("/bin/bash".into()),
            sudo: Some("ALL=(ALL) NOPASSWD:ALL".into()),
            lock_passwd: Some(true),
            ssh_authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhJ0VbVdmqJm1Jv0J0r0x4n0n0n0n0n0n0n0n0n0n0n kiln@build-host.example".into()],
        }],
        ssh_authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0 root@x".into()],
        write_files: vec![
            WriteFile::new("/etc/kiln/yes", "yes").with_mode(0o644).with_owner("root:root"),
            WriteFile::new("/etc/kiln/multi.conf", "a: 1\n# not a comment\n  indented: yes\nlast\n").with_mode(0o600),
            WriteFile::new("/etc/kiln/key.bin", b"\x00\x01\x02\xffbinary").with_mode(0o400).deferred(),
            WriteFile::new("/etc/kiln/octal", "0644"),
            WriteFile::new("/etc/kiln/sexagesimal", "1:20"),
            WriteFile::new("/etc/kiln/date", "2024-01-01"),
            WriteFile::new("/etc/kiln/null", "~"),
            WriteFile::new("/etc/kiln/empty", ""),
        ],
        bootcmd: vec![RunCmd::from("echo kiln-bootcmd > /dev/console")],
        runcmd: vec![
            RunCmd::from("sh /var/lib/kiln/install.sh"),
            RunCmd::argv(["/bin/echo", "no", "0644", "--flag=on"]),
        ],
        ntp: Some(Ntp {
            enabled: Some(true),
            servers: vec!["10.0.0.2".into()],
            pools: vec!["0.pool.ntp.example".into()],
        }),
        timezone: Some("Etc/UTC".into()),
        final_message: Some("KILN-CLOUD-INIT-DONE $UPTIME".into()),
    }
}

/// The seed of a statically addressed host.
pub fn seed() -> Seed {
    Seed {
        user_data: rich_config(),
        meta_data: MetaData {
            instance_id: instance_id("etcd-1", "build-42"),
            local_hostname: Some("etcd-1".into()),
        },
        network_config: Some(NetworkConfig {
            ethernets: BTreeMap::from([(
                "eth0".to_owned(),
                Ethernet {
                    nameservers: Some(Nameservers {
                        addresses: vec!["10.0.0.2".into()],
                        search: vec!["cluster.example".into()],
                    }),
                    ..Ethernet::static_by_mac(
                        "52:54:00:12:34:56",
                        "eth0",
                        ["10.0.0.11/24"],
                        Some("10.0.0.1"),
                    )
                },
            )]),
        }),
    }
}

/// Strings that YAML 1.1 (PyYAML, so cloud-init) reads as something else
/// when left unquoted, in every string position of user-data.
pub fn yaml11_traps() -> CloudConfig {
    let traps = [
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
        "Yes",
        "ON",
        "true",
        "False",
        "null",
        "~",
        "",
        "0644",
        "0600",
        "0o17",
        "0x1F",
        "1_000",
        "1e3",
        "1.5",
        ".5",
        ".inf",
        "-.inf",
        ".NaN",
        "1:20",
        "190:20:30",
        "52:54:00:12:34:56",
        "2024-01-01",
        "2001-12-14t21:59:43.10-05:00",
        "<<",
        "=",
        "- x",
        "# x",
        "a: b",
        "x #y",
        "'q'",
        "\"d\"",
        "@at",
        "`tick",
        "!tag",
        "&anchor",
        "*alias",
        "%pct",
        "{a}",
        "[a]",
        "|",
        ">",
        "---",
        "...",
        " lead",
        "trail ",
        "tab\tin",
    ];
    CloudConfig {
        hostname: Some("on".into()),
        fqdn: Some("0644".into()),
        timezone: Some("2024-01-01".into()),
        final_message: Some("1:20".into()),
        users: vec![User {
            name: "yes".into(),
            groups: traps.iter().take(8).map(|s| s.to_string()).collect(),
            shell: Some("off".into()),
            sudo: Some("null".into()),
            lock_passwd: Some(false),
            ssh_authorized_keys: vec!["~".into()],
        }],
        write_files: traps
            .iter()
            .map(|t| {
                WriteFile::new(format!("/etc/kiln/{t}"), *t)
                    .with_mode(0o644)
                    .with_owner(*t)
            })
            .collect(),
        runcmd: vec![RunCmd::argv(traps), RunCmd::from("0644")],
        bootcmd: traps.iter().map(|t| RunCmd::from(*t)).collect(),
        ntp: Some(Ntp {
            enabled: Some(false),
            servers: traps.iter().map(|t| t.to_string()).collect(),
            pools: vec!["no".into()],
        }),
        ..CloudConfig::default()
    }
}
