//! The local registry reads nothing outside its directory: an `MLmodel` naming an absolute
//! path, `..` in any disguise, or a symlink leading out is refused before the file is
//! opened, and no message names a server path. An `MLmodel` it cannot read is refused
//! saying why.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::harness::{Harness, Kind, Spec, fetch, model_name, register, resolve, sha256};
use stockcast_model_registry_proxy::registry::{ArtifactFormat, LocalRegistry, Registry};
use stockcast_proto::stockcast::registry::v1 as pb;
use tonic::Code;

/// A harness on a local registry in `dirs/models`, and a directory outside it holding a
/// readable ONNX model (`outside/model.onnx`) and a FIFO (`outside/fifo`, which blocks
/// whoever opens it).
async fn setup() -> (Harness, std::path::PathBuf, tempfile::TempDir, Vec<u8>) {
    let dirs = tempfile::tempdir().unwrap();
    let root = dirs.path().join("models");
    let registry: Arc<dyn Registry> = Arc::new(
        LocalRegistry::open(&root, stockcast_runtime::clock::system())
            .await
            .unwrap(),
    );
    let h = Harness::start_on(Kind::Local, registry, Duration::ZERO, dirs).await;
    let outside = tempfile::tempdir().unwrap();
    // A real model: served with its SHA-256 if the registry reads it.
    let probe = model_name("probe");
    let (_, bytes) = register(&*h.registry, &probe, Spec::default()).await;
    std::fs::write(outside.path().join("model.onnx"), &bytes).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(outside.path().join("fifo"))
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    (h, root, outside, bytes)
}

fn write_mlmodel(root: &Path, name: &str, data: &str) {
    let path = root.join(name).join("1").join("model").join("MLmodel");
    std::fs::write(
        path,
        format!("flavors:\n  onnx:\n    code: null\n    data: {data}\n    onnx_version: 1.17.0\n"),
    )
    .unwrap();
}

/// Resolves and fetches `models:/name/1`: both must be refused, within a minute (a FIFO
/// opened by mistake would block), naming no server path.
async fn assert_refused(h: &Harness, name: &str, case: &str, server_paths: &[&Path]) {
    let mut client = h.client.clone();
    let uri = format!("models:/{name}/1");
    let resolved = tokio::time::timeout(Duration::from_secs(60), resolve(&mut client, &uri))
        .await
        .unwrap_or_else(|_| panic!("{case}: resolving blocked: the file was opened"));
    let error = match resolved {
        Ok(answer) => panic!("{case}: served {:?}", answer.version.map(|v| v.sha256)),
        Err(error) => error,
    };
    assert_eq!(error.code(), Code::FailedPrecondition, "{case}: {error:?}");
    for path in server_paths {
        let path = path.display().to_string();
        assert!(
            !error.message().contains(&path),
            "{case}: the message names a server path: {error:?}"
        );
    }
    assert!(
        !error.message().contains("/tmp"),
        "{case}: the message names a server path: {error:?}"
    );
    let fetched = tokio::time::timeout(Duration::from_secs(60), fetch(&mut client, &uri, 0, 0))
        .await
        .unwrap_or_else(|_| panic!("{case}: fetching blocked: the file was opened"));
    let error = fetched.expect_err(case);
    assert_eq!(error.code(), Code::FailedPrecondition, "{case}: {error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlmodel_paths_outside_the_registry_are_refused() {
    let (h, root, outside, _) = setup().await;
    let out = outside.path().display().to_string();
    // `model/` is three levels below the registry directory.
    let cases = [
        format!("{out}/model.onnx"),
        format!("'{out}/model.onnx'"),
        format!("\"{out}/model.onnx\""),
        format!("/{out}/model.onnx"),
        format!("{out}/./model.onnx"),
        format!("{out}/fifo"),
        "/etc/passwd".to_owned(),
        "/proc/self/environ".to_owned(),
        "/dev/zero".to_owned(),
        "../../../../etc/passwd".to_owned(),
        "./../../../../etc/passwd".to_owned(),
        "sub/../../../../../etc/passwd".to_owned(),
        "model.onnx/../../../../../etc/passwd".to_owned(),
        "..".to_owned(),
        ".".to_owned(),
        "'..'".to_owned(),
        "./.././../1/model/model.onnx".to_owned(),
    ];
    for (i, data) in cases.iter().enumerate() {
        let name = model_name(&format!("mlmodel{i}"));
        register(
            &*h.registry,
            &name,
            Spec {
                format: ArtifactFormat::MlflowOnnx,
                ..Spec::default()
            },
        )
        .await;
        write_mlmodel(&root, &name, data);
        assert_refused(&h, &name, data, &[&root, outside.path()]).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_leading_outside_the_registry_are_refused() {
    use std::os::unix::fs::symlink;
    let (h, root, outside, bytes) = setup().await;
    let out = outside.path();
    let mlflow = Spec {
        format: ArtifactFormat::MlflowOnnx,
        ..Spec::default()
    };

    // A plain ONNX version whose file is a symlink out.
    let name = model_name("link-file");
    register(&*h.registry, &name, Spec::default()).await;
    let file = root.join(&name).join("1").join("model.onnx");
    std::fs::remove_file(&file).unwrap();
    symlink(out.join("model.onnx"), &file).unwrap();
    assert_refused(&h, &name, "model.onnx -> outside", &[&root, out]).await;

    // ... or to a FIFO outside.
    let name = model_name("link-fifo");
    register(&*h.registry, &name, Spec::default()).await;
    let file = root.join(&name).join("1").join("model.onnx");
    std::fs::remove_file(&file).unwrap();
    symlink(out.join("fifo"), &file).unwrap();
    assert_refused(&h, &name, "model.onnx -> fifo", &[&root, out]).await;

    // An MLflow-flavor version whose data file is a relative symlink climbing out.
    let name = model_name("link-relative");
    register(&*h.registry, &name, mlflow.clone()).await;
    let file = root.join(&name).join("1").join("model").join("model.onnx");
    std::fs::remove_file(&file).unwrap();
    let up = "../".repeat(5);
    symlink(
        format!(
            "{up}{}/model.onnx",
            out.display().to_string().trim_start_matches('/')
        ),
        &file,
    )
    .unwrap();
    assert_refused(&h, &name, "relative symlink", &[&root, out]).await;

    // A directory symlink inside the model directory, named by MLmodel.
    let name = model_name("link-dir");
    register(&*h.registry, &name, mlflow.clone()).await;
    symlink(out, root.join(&name).join("1").join("model").join("sub")).unwrap();
    write_mlmodel(&root, &name, "sub/model.onnx");
    assert_refused(&h, &name, "sub -> outside dir", &[&root, out]).await;

    // The MLmodel file itself a symlink out.
    let name = model_name("link-mlmodel");
    register(&*h.registry, &name, mlflow.clone()).await;
    let outside_mlmodel = out.join("MLmodel");
    std::fs::write(
        &outside_mlmodel,
        "flavors:\n  onnx:\n    data: model.onnx\n",
    )
    .unwrap();
    let mlmodel = root.join(&name).join("1").join("model").join("MLmodel");
    std::fs::remove_file(&mlmodel).unwrap();
    symlink(&outside_mlmodel, &mlmodel).unwrap();
    assert_refused(&h, &name, "MLmodel -> outside", &[&root, out]).await;

    // A whole version directory that is a symlink out (a copy of a real version).
    let name = model_name("link-version");
    register(&*h.registry, &name, Spec::default()).await;
    let version = root.join(&name).join("1");
    let copy = out.join("version-copy");
    std::fs::create_dir(&copy).unwrap();
    for file in ["version.json", "model.onnx"] {
        std::fs::copy(version.join(file), copy.join(file)).unwrap();
    }
    std::fs::remove_dir_all(&version).unwrap();
    symlink(&copy, &version).unwrap();
    let mut client = h.client.clone();
    let error = resolve(&mut client, &format!("models:/{name}/1"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert!(
        error.message().contains("outside the registry directory"),
        "{error:?}"
    );
    assert!(!error.message().contains("/tmp"), "{error:?}");

    // A whole model directory that is a symlink out: refused, and listing (which the poller
    // does too) skips it instead of failing.
    let name = model_name("link-model");
    register(&*h.registry, &name, Spec::default()).await;
    let model = root.join(&name);
    let copy = out.join("model-copy");
    std::fs::rename(&model, &copy).unwrap();
    symlink(&copy, &model).unwrap();
    let error = resolve(&mut client, &format!("models:/{name}/1"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    let listed = client
        .list_models(pb::ListModelsRequest {
            page_size: 1_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .models;
    assert!(!listed.is_empty(), "the other models are listed");
    assert!(!listed.iter().any(|m| m.name == name), "{listed:?}");

    // A symlink that stays inside the registry is followed.
    let name = model_name("link-inside");
    register(&*h.registry, &name, Spec::default()).await;
    let file = root.join(&name).join("1").join("model.onnx");
    std::fs::remove_file(&file).unwrap();
    let probe = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("probe")
        })
        .unwrap();
    symlink(probe.join("1").join("model.onnx"), &file).unwrap();
    let served = resolve(&mut client, &format!("models:/{name}/1"))
        .await
        .unwrap();
    assert_eq!(served.version.unwrap().sha256, sha256(&bytes));
    h.stop().await;
}

/// Regression: an `MLmodel` that is not UTF-8 was UNAVAILABLE (as if the disk failed); it is
/// refused as what it is, and so are the other unreadable ones, each saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_mlmodel_files_are_refused_saying_why() {
    let (h, root, outside, _) = setup().await;
    let cases: [(&[u8], &str); 4] = [
        (
            b"flavors:\n  onnx:\n    data: \xff\xfe.onnx\n",
            "not UTF-8 text",
        ),
        (
            b"flavors:\n  sklearn:\n    data: model.pkl\n",
            "no onnx flavor",
        ),
        (b"flavors:\n  onnx:\n    code: null\n", "names no data file"),
        (&[b'#'; (1 << 20) + 1], "more than the 1048576"),
    ];
    for (i, (mlmodel, why)) in cases.into_iter().enumerate() {
        let name = model_name(&format!("unreadable{i}"));
        register(
            &*h.registry,
            &name,
            Spec {
                format: ArtifactFormat::MlflowOnnx,
                ..Spec::default()
            },
        )
        .await;
        let path = root.join(&name).join("1").join("model").join("MLmodel");
        std::fs::write(path, mlmodel).unwrap();
        assert_refused(&h, &name, why, &[&root, outside.path()]).await;
        let mut client = h.client.clone();
        let error = resolve(&mut client, &format!("models:/{name}/1"))
            .await
            .expect_err(why);
        assert!(error.message().contains(why), "{why}: {error:?}");
    }
    h.stop().await;
}
