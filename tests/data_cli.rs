//! End-to-end tests of the IDX datasets (`fashion_mnist`, `mnist`), of class names in the run
//! directory, the weights, the ONNX file, `eval --json` and `predict` (`model.labels`), and of
//! `wrnc data fetch --archive FOLDER` for the IDX sets, and of `wrnc data inspect`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use wrnc_onnx::MetaKey;

const FASHION: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The 28x28 image of `class`: a bright 7x7 square at one of 16 places on a dark background.
fn image(class: usize) -> Vec<u8> {
    let (cy, cx) = (class / 4 * 7, class % 4 * 7);
    (0..28 * 28)
        .map(|i| {
            let (y, x) = (i / 28, i % 28);
            if (cy..cy + 7).contains(&y) && (cx..cx + 7).contains(&x) {
                230
            } else {
                20
            }
        })
        .collect()
}

/// Writes the two IDX files of one split of `n` images (labels cycling through 0..10) into
/// `dir` (plain; the reader's unit tests cover gzipped files).
fn write_split(dir: &Path, images: &str, labels: &str, n: usize) {
    let mut img = 0x0803u32.to_be_bytes().to_vec();
    for d in [n as u32, 28, 28] {
        img.extend(d.to_be_bytes());
    }
    let mut lab = 0x0801u32.to_be_bytes().to_vec();
    lab.extend((n as u32).to_be_bytes());
    for i in 0..n {
        img.extend(image(i % 10));
        lab.push((i % 10) as u8);
    }
    std::fs::write(dir.join(images), img).unwrap();
    std::fs::write(dir.join(labels), lab).unwrap();
}

/// A small Fashion-MNIST-format folder `dir/fm` (60 training, 20 test images) and a
/// WRN-10-1 spec `dir/fm.yaml` reading it, one epoch; `model_extra` is appended to `model:`.
fn idx_spec(dir: &Path, model_extra: &str) -> (String, PathBuf) {
    let data = dir.join("fm");
    std::fs::create_dir_all(&data).unwrap();
    write_split(
        &data,
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        60,
    );
    write_split(
        &data,
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        20,
    );
    let text = format!(
        "name: fm\nmodel:\n  wrn: {{depth: 10, width: 1}}\n{model_extra}data:\n  dataset: \
         fashion_mnist\n  root: {}\n  augment: none\ntrain:\n  epochs: 1\n  batch_size: 20\n",
        data.display()
    );
    (write(dir, "fm.yaml", &text), data)
}

fn onnx_labels(onnx: &Path) -> Vec<String> {
    let m = wrnc_onnx::read_model(&std::fs::read(onnx).unwrap()).unwrap();
    serde_json::from_str(m.metadata(MetaKey::ClassLabels.as_str()).unwrap()).unwrap()
}

fn weights_names(path: &Path) -> Option<Vec<String>> {
    let w = wrnc_ir::Weights::load(path).unwrap();
    w.metadata
        .get("class_names")
        .map(|s| serde_json::from_str(s).unwrap())
}

fn eval_classes(spec: &str, weights: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "eval",
        spec,
        "--weights",
        utf8(weights),
        "--split",
        "test",
        "--json",
    ];
    args.extend_from_slice(extra);
    let r = wrnc(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    serde_json::from_value(v["classes"].clone()).unwrap()
}

#[test]
fn idx_run_records_the_class_names_everywhere() {
    let dir = tempdir();
    let (spec, _) = idx_spec(dir.path(), "");
    let run = dir.path().join("run");
    let r = train(&spec, &run, &["--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let fashion: Vec<String> = FASHION.map(String::from).to_vec();
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["dataset"], "fashion_mnist");
    assert_eq!(
        (info["train_size"].as_u64(), info["test_size"].as_u64()),
        (Some(60), Some(20))
    );
    assert_eq!(info["classes"], serde_json::json!(fashion));
    let last = run.join("last.safetensors");
    assert_eq!(weights_names(&last), Some(fashion.clone()));
    assert_eq!(onnx_labels(&run.join("model.onnx")), fashion);
    assert_eq!(eval_classes(&spec, &last, &[]), fashion);

    // predict prints a Fashion-MNIST class name for an image of the set.
    let png = dir.path().join("bag.png");
    image::GrayImage::from_raw(28, 28, image(8))
        .unwrap()
        .save(&png)
        .unwrap();
    let r = wrnc(&[
        "predict",
        utf8(&run.join("model.onnx")),
        utf8(&png),
        "--top",
        "10",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for name in FASHION {
        assert!(r.stdout.contains(name), "{name} not in {}", r.stdout);
    }
}

#[test]
fn model_labels_name_the_classes_of_a_built_in_dataset() {
    let dir = tempdir();
    let w = dir.path().join("w.safetensors");
    init("specs/quickstart.yaml", &w, &["--seed", "1"]);
    // Weights without names (wrnc init, older files) load; names come from the dataset.
    assert_eq!(weights_names(&w), None);
    let digits: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(eval_classes("specs/quickstart.yaml", &w, &[]), digits);
    let onnx = dir.path().join("m.onnx");
    let r = export("specs/quickstart.yaml", &w, &onnx, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(onnx_labels(&onnx), digits);

    // model.labels wins, in eval --json and in the ONNX file.
    let words = "[zero, one, two, three, four, five, six, seven, eight, nine]";
    let set = format!("model.labels={words}");
    let named: Vec<String> = words
        .trim_matches(['[', ']'])
        .split(", ")
        .map(String::from)
        .collect();
    assert_eq!(
        eval_classes("specs/quickstart.yaml", &w, &["--set", &set]),
        named
    );
    let r = export("specs/quickstart.yaml", &w, &onnx, &["--set", &set]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(onnx_labels(&onnx), named);
}

#[test]
fn bad_model_labels_are_spec_errors_with_their_line() {
    let dir = tempdir();
    let spec = |labels: &str| {
        write(
            dir.path(),
            "l.yaml",
            &format!("model:\n  wrn: {{depth: 10, width: 1}}\n  labels: {labels}\ndata:\n  dataset: digits\n"),
        )
    };
    let ten = |last: &str| format!("[a, b, c, d, e, f, g, h, i, {last}]");
    let r = wrnc(&["check", &spec("[a, b]")]);
    assert_usage_error(&r, &["model.labels", "2 names for 10 classes", "l.yaml:3"]);
    let r = wrnc(&["check", &spec(&ten("c"))]);
    assert_usage_error(&r, &["model.labels[9]", "`c` already names class 2"]);
    let r = wrnc(&["check", &spec(&ten("''"))]);
    assert_usage_error(&r, &["model.labels[9]", "cannot name a class"]);
    let r = wrnc(&["check", &spec(&ten("j"))]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("labels:"), "{}", r.stdout);
}

#[test]
fn missing_and_corrupt_idx_files_are_clear_runtime_errors() {
    let dir = tempdir();
    let (spec, data) = idx_spec(dir.path(), "");
    let run = dir.path().join("run");
    std::fs::remove_file(data.join("t10k-labels-idx1-ubyte")).unwrap();
    let r = train(&spec, &run, &["--quiet"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("t10k-labels-idx1-ubyte[.gz]")
            && r.stderr.contains("wrnc data fetch fashion_mnist"),
        "{}",
        r.stderr
    );
    // Labels where the test images belong: the magic number is refused, naming the file.
    std::fs::copy(
        data.join("train-labels-idx1-ubyte"),
        data.join("t10k-images-idx3-ubyte"),
    )
    .unwrap();
    std::fs::copy(
        data.join("train-labels-idx1-ubyte"),
        data.join("t10k-labels-idx1-ubyte"),
    )
    .unwrap();
    let r = train(&spec, &run, &["--quiet"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("t10k-images-idx3-ubyte") && r.stderr.contains("0x00000801"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn fetch_installs_the_debian_copy_offline() {
    let sys = Path::new(wrnc_recipe::FASHION_MNIST_SYSTEM_DIR);
    if !sys.is_dir() {
        eprintln!("skipped: {} is not installed", sys.display());
        return;
    }
    let dir = tempdir();
    let dest = dir.path().join("data");
    let r = wrnc(&[
        "data",
        "fetch",
        "fashion_mnist",
        "--dir",
        utf8(&dest),
        "--archive",
        utf8(sys),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("fashion_mnist is ready"), "{}", r.stdout);
    let names: Vec<String> = std::fs::read_dir(dest.join("fashion-mnist"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    // A second fetch sees the folder and does nothing.
    let r = wrnc(&["data", "fetch", "fashion_mnist", "--dir", utf8(&dest)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("already in"), "{}", r.stderr);
    // A folder that is not a copy of the set: a usage error, nothing installed.
    let r = wrnc(&[
        "data",
        "fetch",
        "fashion_mnist",
        "--dir",
        utf8(&dir.path().join("other")),
        "--archive",
        utf8(dir.path()),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("train-images-idx3-ubyte"), "{}", r.stderr);
    assert!(!dir.path().join("other").join("fashion-mnist").exists());
}

#[test]
fn inspect_reports_an_image_folder() {
    let dir = tempdir();
    let root = dir.path().join("pets");
    let save = |rel: &str, img: image::DynamicImage| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        img.save(&p).unwrap();
    };
    let rgb = |seed: u8| {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(32, 32, |x, y| {
            image::Rgb([x as u8 ^ seed, y as u8, seed])
        }))
    };
    for i in 0..4 {
        save(&format!("train/cat/{i}.png"), rgb(i));
        save(&format!("train/dog/{i}.jpg"), rgb(100 + i));
    }
    save(
        "train/dog/grey.png",
        image::DynamicImage::ImageLuma8(image::GrayImage::new(64, 48)),
    );
    std::fs::create_dir_all(root.join("test/cat")).unwrap();
    std::fs::copy(root.join("train/cat/0.png"), root.join("test/cat/same.png")).unwrap();
    save("test/dog/x.png", rgb(7));
    std::fs::write(root.join("train/cat/.DS_Store"), b"x").unwrap();
    std::fs::write(root.join("train/cat/broken.png"), b"not a png").unwrap();

    let r = wrnc(&["data", "inspect", utf8(&root)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = &r.stdout;
    for needle in [
        "11 images in 2 splits (train, test), 2 classes",
        "32x32 RGB8: 10; 64x48 L8: 1",
        "skipped: 1 file (1 hidden): train/cat/.DS_Store",
        "train/cat/broken.png",
        "test/cat/same.png = train/cat/0.png",
        "dataset: folder",
        "input: [3, 32, 32]",
        "classes: 2",
        "val_size: 1",
    ] {
        assert!(out.contains(needle), "`{needle}` not in:\n{out}");
    }
    let cat = out.lines().find(|l| l.starts_with("cat ")).unwrap();
    assert_eq!(
        cat.split_whitespace().collect::<Vec<_>>(),
        ["cat", "4", "1"]
    );

    let r = wrnc(&["data", "inspect", utf8(&root), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["images"], 11);
    assert_eq!(v["splits"][0]["classes"]["dog"], 5);
    assert_eq!(v["corrupt"][0]["path"], "train/cat/broken.png");
    assert_eq!(v["skipped"][0]["reason"], "hidden");
    assert!(v["spec_snippet"].as_str().unwrap().contains("classes: 2"));

    let r = wrnc(&["data", "inspect", utf8(&dir.path().join("nope"))]);
    assert_usage_error(&r, &["nope", "no such folder"]);
    let r = wrnc(&["data", "inspect", utf8(&root.join("train"))]);
    assert_usage_error(&r, &["none of the split folders"]);
}
