//! Role profiles rendered for every OS: unit files, LB configs, snapshots.
