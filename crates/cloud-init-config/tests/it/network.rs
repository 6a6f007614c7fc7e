//! network-config as cloud-init 22.4 renders it for Debian's ifupdown (`net-convert -O eni`).

use std::collections::BTreeMap;
use std::process::Command;

use cloud_init_config::*;

use crate::fixtures::seed;
use crate::tools::{run, run_text, tool};

/// Renders `network` to ENI with cloud-init, as Debian 12 would at boot,
/// with the MAC mapped to a kernel name `ens3` (so `set-name` matters).
fn to_eni(network: &NetworkConfig, mac: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(NETWORK_CONFIG);
    std::fs::write(&input, render_network_config(network).unwrap()).unwrap();
    let out = dir.path().join("out");
    run(Command::new(tool("cloud-init", "cloud-init"))
        .args([
            "devel",
            "net-convert",
            "--kind",
            "yaml",
            "--distro",
            "debian",
            "--output-kind",
            "eni",
        ])
        .arg("--network-data")
        .arg(&input)
        .arg("--directory")
        .arg(&out)
        .args(["--mac", &format!("ens3,{mac}")]));
    let eni = std::fs::read_to_string(out.join("etc/network/interfaces.d/50-cloud-init")).unwrap();
    let udev =
        std::fs::read_to_string(out.join("etc/udev/rules.d/70-persistent-net.rules")).unwrap();
    (eni, udev)
}

#[test]
fn static_host_renders_to_ifupdown_with_gateway_and_rename() {
    let network = seed().network_config.unwrap();
    let (eni, udev) = to_eni(&network, "52:54:00:12:34:56");
    for line in [
        "auto eth0",
        "iface eth0 inet static",
        "address 10.0.0.11/24",
        "gateway 10.0.0.1",
        "dns-nameservers 10.0.0.2",
        "dns-search cluster.example",
    ] {
        assert!(eni.contains(line), "missing {line:?} in:\n{eni}");
    }
    // ifupdown's own `gateway`, not a `post-up route` that needs net-tools.
    assert!(!eni.contains("route add"), "{eni}");
    assert!(
        udev.contains(r#"ATTR{address}=="52:54:00:12:34:56", NAME="eth0""#),
        "{udev}"
    );
}

#[test]
fn routes_with_a_cidr_destination_are_accepted_by_cloud_init() {
    let eth = Ethernet {
        routes: vec![Route {
            to: "192.168.0.0/16".into(),
            via: "10.0.0.254".into(),
            metric: Some(100),
        }],
        ..Ethernet::static_by_mac("52:54:00:12:34:57", "eth1", ["10.0.0.12/24"], None)
    };
    let network = NetworkConfig {
        ethernets: BTreeMap::from([("eth1".to_owned(), eth)]),
    };
    let (eni, _) = to_eni(&network, "52:54:00:12:34:57");
    assert!(
        eni.contains("192.168.0.0/16") || eni.contains("192.168.0.0"),
        "{eni}"
    );
    assert!(eni.contains("10.0.0.254"), "{eni}");
}

/// Pins why the model refuses `to: default`: cloud-init 22.4 itself fails on it.
#[test]
fn cloud_init_22_4_rejects_route_to_default() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(NETWORK_CONFIG);
    std::fs::write(
        &input,
        "version: 2\nethernets:\n  eth0:\n    addresses: [10.0.0.11/24]\n    routes:\n    - to: default\n      via: 10.0.0.1\n",
    )
    .unwrap();
    let out = Command::new(tool("cloud-init", "cloud-init"))
        .args([
            "devel",
            "net-convert",
            "--kind",
            "yaml",
            "--distro",
            "debian",
            "--output-kind",
            "eni",
        ])
        .arg("--network-data")
        .arg(&input)
        .arg("--directory")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let version = run_text(Command::new(tool("cloud-init", "cloud-init")).arg("--version"));
    if version.contains(" 22.") {
        assert!(
            !out.status.success() && stderr.contains("not a valid ip address"),
            "{stderr}"
        );
    }
    let network = NetworkConfig {
        ethernets: BTreeMap::from([(
            "eth0".to_owned(),
            Ethernet {
                routes: vec![Route {
                    to: "default".into(),
                    via: "10.0.0.1".into(),
                    metric: None,
                }],
                ..Ethernet::default()
            },
        )]),
    };
    let err = render_network_config(&network).unwrap_err().to_string();
    assert!(err.contains("\"default\""), "{err}");
}
