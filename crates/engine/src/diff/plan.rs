//! The upgrade plan (`kiln diff --plan`): from what differs between two builds, which hosts
//! change, which units each stops, starts or restarts and in what order, and in which steps the
//! hosts go: the members of roles that must not all be down at once one at a time, the rest
//! together.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::side::{load_pair, Side};
use super::units::View;
use super::{compare, BuildRef, Change, DiffError, UnitAction, UnitChange};

/// The JSON form's name and version.
pub const PLAN_SCHEMA: &str = "kiln-upgrade-plan/1";

/// Roles whose hosts are upgraded one at a time, in this order, and why.
pub const ONE_AT_A_TIME: [(&str, &str); 3] = [
    (
        "etcd",
        "each etcd member is a vote: one at a time keeps the quorum",
    ),
    (
        "master",
        "the API servers share one endpoint: one at a time keeps the API answering",
    ),
    (
        "lb",
        "the keepalived pair holds the VIP: one at a time keeps it answering",
    ),
];

/// What to do, host by host and step by step, to go from the old build to the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UpgradePlan {
    /// Always [`PLAN_SCHEMA`].
    pub schema: &'static str,
    /// The cluster.
    pub cluster: String,
    /// The build the hosts run.
    pub old: BuildRef,
    /// The build to install.
    pub new: BuildRef,
    /// The steps in order; a step's hosts go together, each step after the previous one's
    /// hosts reported healthy.
    pub steps: Vec<Step>,
    /// Every host to install the new build on, by name.
    pub hosts: Vec<HostUpgrade>,
    /// Hosts of the old build that the new one no longer has (not upgraded: retire them).
    pub removed_hosts: Vec<String>,
    /// Hosts on which nothing changes (install.sh still records the new generation there).
    pub unchanged_hosts: Vec<String>,
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Step {
    /// 1-based.
    pub number: usize,
    /// The hosts of the step.
    pub hosts: Vec<String>,
    /// The role that makes it a step of one host, if any.
    pub one_at_a_time: Option<String>,
    /// Why the step is what it is.
    pub why: String,
}

/// What changes on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HostUpgrade {
    /// Host name.
    pub host: String,
    /// Added or changed.
    pub change: Change,
    /// Its roles in the new build.
    pub roles: Vec<String>,
    /// Ids of its bundles that are new or rebuilt.
    pub bundles: Vec<String>,
    /// Its own files (secrets archive) that are new, changed or removed, by archive path.
    pub files: Vec<String>,
    /// Units in the order they are acted on: stops first, then starts and restarts in the
    /// order install.sh enables the units.
    pub units: Vec<UnitChange>,
}

/// Compares two out folders and orders what changed into an upgrade plan.
pub fn upgrade_plan(old: &Path, new: &Path) -> Result<UpgradePlan, DiffError> {
    let (a, b) = load_pair(old, new)?;
    let diff = compare::compare(&a, &b)?;
    let mut hosts = Vec::new();
    let mut removed_hosts = Vec::new();
    for h in diff.hosts {
        if h.change == Change::Removed {
            removed_hosts.push(h.host);
            continue;
        }
        let units = ordered(&a, &b, &h.host, h.units)?;
        hosts.push(HostUpgrade {
            bundles: h
                .bundles
                .iter()
                .filter(|x| x.change != Change::Removed)
                .map(|x| x.id.clone())
                .collect(),
            files: h.files.iter().map(|f| f.path.clone()).collect(),
            host: h.host,
            change: h.change,
            roles: h.roles,
            units,
        });
    }
    Ok(UpgradePlan {
        schema: PLAN_SCHEMA,
        cluster: diff.cluster,
        steps: steps(&hosts),
        old: diff.old,
        new: diff.new,
        hosts,
        removed_hosts,
        unchanged_hosts: diff.unchanged_hosts,
    })
}

/// The units install.sh enables on `host` in `side`, in order.
fn unit_order(side: &Side, host: &str) -> Result<Vec<String>, DiffError> {
    let Some(h) = side.manifest.hosts.get(host) else {
        return Ok(Vec::new());
    };
    Ok(View::of(side, &h.bundles, None)?.units().to_vec())
}

/// `units` ordered: stops in the old build's order, then the rest in the new build's.
fn ordered(
    a: &Side,
    b: &Side,
    host: &str,
    units: Vec<UnitChange>,
) -> Result<Vec<UnitChange>, DiffError> {
    let rank = |order: &[String], u: &UnitChange| order.iter().position(|x| *x == u.unit);
    let (old_order, new_order) = (unit_order(a, host)?, unit_order(b, host)?);
    let (mut stops, mut rest): (Vec<UnitChange>, Vec<UnitChange>) = units
        .into_iter()
        .partition(|u| u.action == UnitAction::Stop);
    stops.sort_by_key(|u| rank(&old_order, u));
    rest.sort_by_key(|u| rank(&new_order, u));
    stops.extend(rest);
    Ok(stops)
}

/// One step per host of a one-at-a-time role (in [`ONE_AT_A_TIME`]'s order, hosts by name),
/// then one step with every other host.
fn steps(hosts: &[HostUpgrade]) -> Vec<Step> {
    let mut serial: BTreeMap<usize, Vec<&HostUpgrade>> = BTreeMap::new();
    let mut together = Vec::new();
    for h in hosts {
        let first = ONE_AT_A_TIME
            .iter()
            .position(|(role, _)| h.roles.iter().any(|r| r == role));
        match first {
            Some(i) => serial.entry(i).or_default().push(h),
            None => together.push(h.host.clone()),
        }
    }
    let mut out = Vec::new();
    for (i, group) in serial {
        let (role, why) = ONE_AT_A_TIME[i];
        for h in group {
            out.push(Step {
                number: out.len() + 1,
                hosts: vec![h.host.clone()],
                one_at_a_time: Some(role.to_owned()),
                why: why.to_owned(),
            });
        }
    }
    if !together.is_empty() {
        out.push(Step {
            number: out.len() + 1,
            hosts: together,
            one_at_a_time: None,
            why: "no role of these hosts needs the others up while one changes".to_owned(),
        });
    }
    out
}
