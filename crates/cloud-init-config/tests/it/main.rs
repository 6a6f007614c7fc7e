//! Integration tests against real components: cloud-init 22.4, PyYAML, blkid,
//! dosfstools, mtools and isoinfo (genisoimage). A missing tool fails the
//! test and names the Debian package to install.

mod fixtures;
mod images;
mod network;
mod seed_dir;
mod snapshots;
mod tools;
mod yaml;
