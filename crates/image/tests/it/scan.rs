//! Completeness: image references in rendered files against the images of a role.

use std::fs;

use kiln_image::{assemble, missing_images, scan_file, MentionKind};
use kiln_store::Store;

use crate::assemble::pause_spec;

#[test]
fn a_rendered_manifest_naming_an_image_not_in_the_lock_is_reported_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("catatonit");
    fs::write(&file, b"not really catatonit").unwrap();
    let store = Store::open(&tmp.path().join("vendor")).unwrap();
    let pause = assemble(&store, &pause_spec(&file)).unwrap();

    let rendered = tmp.path().join("rootfs/etc");
    fs::create_dir_all(rendered.join("containerd")).unwrap();
    fs::create_dir_all(rendered.join("kubernetes/manifests")).unwrap();
    let config = rendered.join("containerd/config.toml");
    fs::write(
        &config,
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.10.1\"\n",
    )
    .unwrap();
    let pod = rendered.join("kubernetes/manifests/etcd.yaml");
    fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: etcd\n    image: quay.io/coreos/etcd:v3.5.16\n",
    )
    .unwrap();
    // A binary file is skipped, not an error.
    fs::write(rendered.join("blob.bin"), [0xff, 0xfe, 0x00, 0x01]).unwrap();
    assert!(scan_file(&rendered.join("blob.bin")).unwrap().is_empty());

    let in_config = scan_file(&config).unwrap();
    assert_eq!(in_config.len(), 1);
    assert_eq!(in_config[0].kind, MentionKind::SandboxImage);
    assert!(missing_images(&in_config, std::slice::from_ref(&pause)).is_empty());
    // By digest also matches.
    let by_digest = kiln_image::scan_text(&format!(
        "image: registry.k8s.io/pause@{}\n",
        pause.manifest_digest
    ));
    assert!(missing_images(&by_digest, std::slice::from_ref(&pause)).is_empty());

    let in_pod = scan_file(&pod).unwrap();
    let missing = missing_images(&in_pod, std::slice::from_ref(&pause));
    assert_eq!(missing.len(), 1);
    assert_eq!(
        (missing[0].line, missing[0].text.as_str()),
        (6, "quay.io/coreos/etcd:v3.5.16")
    );

    let err = scan_file(&rendered.join("absent.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.yaml"), "{err}");
}
