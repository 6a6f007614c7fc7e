//! Fake `kiln build` output for tests: `vagrant.json` and real CIDATA seeds
//! (ISO and VFAT, made by cloud-init-config) whose runcmd prints what a
//! test wants on the serial console instead of running install.sh.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cloud_init_config::{
    instance_id, write_iso, write_seed_dir, write_vfat, CloudConfig, Ethernet, MetaData,
    NetworkConfig, RunCmd, Seed, Timestamp, WriteFile,
};

/// One host of a fake cluster.
#[derive(Debug, Clone)]
pub struct FakeHost {
    pub name: String,
    pub ip: String,
    pub mac: String,
    /// runcmd lines (run by sh in the guest).
    pub runcmd: Vec<String>,
    /// Extra files written by cloud-init.
    pub write_files: Vec<WriteFile>,
    /// The seed's `final_message`.
    pub final_message: Option<String>,
}

impl FakeHost {
    /// Host number `n` on 10.77.0.0/24, with no runcmd.
    pub fn new(name: &str, n: u8) -> Self {
        Self {
            name: name.to_owned(),
            ip: format!("10.77.0.{n}"),
            mac: format!("52:54:00:77:00:{n:02x}"),
            runcmd: Vec::new(),
            write_files: Vec::new(),
            final_message: None,
        }
    }

    /// Adds runcmd lines that print each of `lines` on the serial console.
    pub fn says(mut self, lines: &[&str]) -> Self {
        for line in lines {
            self.runcmd.push(format!("echo '{line}' > /dev/ttyS0"));
        }
        self
    }
}

/// Writes `OUT/<cluster>/` with `vagrant.json`, and for each host its seed
/// folder, `cidata.iso` and `cidata.img`; returns `OUT/<cluster>`.
pub fn fake_out(out: &Path, cluster: &str, hosts: &[FakeHost]) -> PathBuf {
    let dir = out.join(cluster);
    let time = Timestamp::from_unix(1_700_000_000).unwrap();
    let mut json_hosts = Vec::new();
    for host in hosts {
        let host_dir = dir.join("hosts").join(&host.name);
        std::fs::create_dir_all(&host_dir).unwrap();
        let mut ethernets = std::collections::BTreeMap::new();
        ethernets.insert(
            "eth0".to_owned(),
            Ethernet::static_by_mac(&host.mac, "eth0", [format!("{}/24", host.ip)], None),
        );
        let seed = Seed {
            user_data: CloudConfig {
                hostname: Some(host.name.clone()),
                write_files: host.write_files.clone(),
                runcmd: host
                    .runcmd
                    .iter()
                    .map(|l| RunCmd::from(l.as_str()))
                    .collect(),
                final_message: host.final_message.clone(),
                ..CloudConfig::default()
            },
            meta_data: MetaData {
                instance_id: instance_id(&host.name, "test-build"),
                local_hostname: Some(host.name.clone()),
            },
            network_config: Some(NetworkConfig { ethernets }),
        };
        write_seed_dir(&host_dir.join("seed"), &seed).unwrap();
        write_iso(&host_dir.join("cidata.iso"), &seed, &[], time).unwrap();
        write_vfat(&host_dir.join("cidata.img"), &seed, &[], time).unwrap();
        json_hosts.push(serde_json::json!({
            "name": host.name,
            "ip": host.ip,
            "mac": host.mac,
            "os": "debian12",
            "roles": ["test"],
            "seed_iso": format!("hosts/{}/cidata.iso", host.name),
            "seed_img": format!("hosts/{}/cidata.img", host.name),
            "memory_mb": 512,
            "cpus": 1,
        }));
    }
    let layout = serde_json::json!({
        "cluster": cluster,
        "network": {"cidr": "10.77.0.0/24", "gateway": null},
        "hosts": json_hosts,
    });
    std::fs::write(
        dir.join("vagrant.json"),
        serde_json::to_string_pretty(&layout).unwrap(),
    )
    .unwrap();
    dir
}
