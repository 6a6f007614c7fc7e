//! Integration tests of kiln-bundle: real files in temp folders, real tools where named.

mod common;
mod contents;
mod outdir;
mod tools;
mod verify;
mod write;
