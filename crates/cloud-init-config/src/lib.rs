//! Typed cloud-init NoCloud documents (`#cloud-config` user-data, meta-data,
//! network-config v2) and reproducible seeds: a folder, a VFAT image or an
//! ISO 9660 image labelled `CIDATA`, optionally carrying extra files such as
//! kiln's role and secrets bundles.
//!
//! Rendering is pure; the writers touch only the path they are given, each
//! file atomically (temporary file in the same folder, fsync, rename).
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod atomic;
mod error;
mod fat_raw;
mod image;
mod iso;
mod model;
mod network;
mod render;
mod sink;
mod vfat;

pub use error::{Error, Result};
pub use image::{Timestamp, VOLUME_LABEL};
pub use iso::{write_data_iso, write_iso};
pub use model::{
    instance_id, CloudConfig, Encoding, ManageEtcHosts, MetaData, Ntp, RunCmd, User, WriteFile,
};
pub use network::{Ethernet, Match, Nameservers, NetworkConfig, Route};
pub use render::{
    render_meta_data, render_network_config, render_user_data, write_seed_dir, Seed, SeedFile,
    CLOUD_CONFIG_HEADER, META_DATA, NETWORK_CONFIG, USER_DATA,
};
pub use sink::ImageDigest;
pub use vfat::{write_fat_volume, write_vfat};
