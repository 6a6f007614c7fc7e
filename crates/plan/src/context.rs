//! The values templates see.

use std::collections::BTreeMap;

use kiln_spec::{Host, OsId, Project};
use serde_json::{json, Value};

fn host_value(h: &Host) -> Value {
    json!({
        "name": h.name,
        "ip": h.ip.to_string(),
        "mac": h.mac,
        "os": h.os.as_str(),
        "roles": h.roles,
        "vars": h.vars,
    })
}

/// Context for role-scope templates; `api_url` is the plan's (one rule, see
/// [`kiln_pki_layout::PkiInput::api_endpoint`]), `kubeadm` the plan's kubeadm settings when
/// `bootstrap = "kubeadm"` (templates see `kubeadm.etcd`: `stacked` or `external`).
pub fn role_context(
    project: &Project,
    role: &str,
    os: OsId,
    api_url: Option<&str>,
    kubeadm: Option<&kiln_kubeadm::Settings>,
) -> Value {
    let c = &project.cluster;
    let mut vars: BTreeMap<String, Value> = c.vars.clone();
    for o in &project.overlays {
        for (k, v) in &o.vars {
            vars.insert(k.clone(), v.clone());
        }
    }
    let mut roles: BTreeMap<String, Vec<Value>> = ["etcd", "master", "node", "lb"]
        .iter()
        .map(|r| (r.to_string(), Vec::new()))
        .collect();
    for name in project.profiles.keys() {
        roles.entry(name.clone()).or_default();
    }
    for h in &c.hosts {
        for r in &h.roles {
            roles.entry(r.clone()).or_default().push(host_value(h));
        }
    }
    let lb = c.lb.as_ref().map(|l| {
        let backends: Vec<String> = if l.backends.is_empty() {
            c.hosts_with("master")
                .map(|m| format!("{}:{}", m.ip, l.backend_port))
                .collect()
        } else {
            l.backends.clone()
        };
        json!({"vip": l.vip.to_string(), "port": l.port, "backends": backends})
    });
    json!({
        "cluster": {
            "name": c.name,
            "arch": c.arch.as_str(),
            "os": c.os.as_str(),
            "generation": c.generation,
            "bootstrap": c.bootstrap.as_str(),
        },
        "kubeadm": kubeadm.map(|k| json!({
            "etcd": match k.etcd {
                kiln_kubeadm::Etcd::Stacked { .. } => "stacked",
                kiln_kubeadm::Etcd::External { .. } => "external",
            },
        })),
        "network": c.network,
        "lb": lb,
        "api": {"url": api_url},
        "pki": {"kubelet_auth": c.pki.kubelet_auth},
        "versions": c.versions,
        "hosts": c.hosts.iter().map(host_value).collect::<Vec<_>>(),
        "roles": roles,
        "vars": vars,
        "role": role,
        "os": {"id": os.as_str(), "family": os.family()},
    })
}

/// Context for host-scope templates: the host's role context plus `host`, with host vars
/// layered on top; the role context is built once per bundle rather than per host
/// (the context lists every host, so rebuilding it per host is quadratic in the cluster size).
pub fn host_context_from(role_ctx: &Value, host: &Host) -> Value {
    let mut v = role_ctx.clone();
    let obj = v.as_object_mut().expect("object");
    if let Some(Value::Object(vars)) = obj.get_mut("vars") {
        for (k, val) in &host.vars {
            vars.insert(k.clone(), val.clone());
        }
    }
    obj.insert("host".into(), host_value(host));
    v
}
