//! Helpers shared by the end-to-end tests: run the `wrnc` binary and inspect its output.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The result of one `wrnc` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `wrnc` with `args` in `dir` (the repository root by default).
pub fn wrnc_in(dir: &Path, args: &[&str]) -> Run {
    wrnc_env_in(dir, args, &[])
}

/// Runs `wrnc` from the repository root with extra environment variables.
pub fn wrnc_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    wrnc_env_in(&root(), args, env)
}

/// Runs `wrnc` with `args` in `dir` with extra environment variables.
pub fn wrnc_env_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_wrnc"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("failed to start wrnc");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `wrnc` from the repository root.
pub fn wrnc(args: &[&str]) -> Run {
    wrnc_in(&root(), args)
}

/// Runs `wrnc init SPEC -o OUT EXTRA...`, which must succeed.
pub fn init(spec: &str, out: &Path, extra: &[&str]) {
    let mut args = vec!["init", spec, "-o", utf8(out)];
    args.extend_from_slice(extra);
    let r = wrnc(&args);
    assert_eq!(r.code, 0, "wrnc init {spec}: {}", r.stderr);
}

/// Runs `wrnc train SPEC --out RUN EXTRA...`.
pub fn train(spec: &str, run: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["train", spec, "--out", utf8(run)];
    args.extend_from_slice(extra);
    wrnc(&args)
}

/// Runs `wrnc export SPEC --weights WEIGHTS -o OUT EXTRA...`.
pub fn export(spec: &str, weights: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["export", spec, "--weights", utf8(weights), "-o", utf8(out)];
    args.extend_from_slice(extra);
    wrnc(&args)
}

/// Runs `wrnc verify ONNX --spec SPEC --weights WEIGHTS EXTRA...`.
pub fn verify(onnx: &Path, spec: &str, weights: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "verify",
        utf8(onnx),
        "--spec",
        spec,
        "--weights",
        utf8(weights),
    ];
    args.extend_from_slice(extra);
    wrnc(&args)
}

/// `path` as text (test paths are UTF-8).
pub fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub use wrnc_testkit::tempdir;

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Asserts a usage/spec error: exit 2, no panic, and every needle in stderr.
pub fn assert_usage_error(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, 2, "exit code; stderr:\n{}", r.stderr);
    assert!(
        !r.stderr.contains("panicked") && !r.stderr.contains("RUST_BACKTRACE"),
        "panic: {}",
        r.stderr
    );
    for n in needles {
        assert!(
            r.stderr.contains(n),
            "missing `{n}` in stderr:\n{}",
            r.stderr
        );
    }
}

/// Runs `wrnc` in `dir` with its address space limited to `max_vm_kib` KiB (`ulimit -v`, so an
/// unbounded allocation fails instead of swapping) and returns the run and its wall time.
pub fn wrnc_limited(dir: &Path, args: &[&str], max_vm_kib: u64) -> (Run, std::time::Duration) {
    let script = format!("ulimit -v {max_vm_kib} && exec \"$0\" \"$@\"");
    let t = std::time::Instant::now();
    let out: Output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_wrnc"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("failed to start sh");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, t.elapsed())
}

/// Writes a synthetic CIFAR-10 folder (`per_file` records in each of the five training files,
/// `test` test records) under `dir/cifar` and a WRN-10-1 spec `dir/NAME.yaml` reading it with
/// `data_extra` appended to its `data:` section and `train_extra` as its `train:` section;
/// returns the spec's path and the data folder.
pub fn synthetic_cifar_spec(
    dir: &Path,
    name: &str,
    (per_file, test): (usize, usize),
    data_extra: &str,
    train_extra: &str,
) -> (String, PathBuf) {
    let data = dir.join("cifar");
    wrnc_data::testutil::write_cifar_like(
        &data,
        wrnc_recipe::DatasetKind::Cifar10,
        per_file,
        test,
        7,
    )
    .unwrap();
    let spec = write(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nmodel:\n  wrn: {{depth: 10, width: 1}}\ndata:\n  dataset: cifar10\n  \
             root: {}\n{data_extra}train:\n{train_extra}",
            data.display()
        ),
    );
    (spec, data)
}

/// Class folder names of [`digits_folder`], in label order (sorted, as the folder's classes).
pub const DIGIT_NAMES: [&str; 10] = [
    "d0_zero", "d1_one", "d2_two", "d3_three", "d4_four", "d5_five", "d6_six", "d7_seven",
    "d8_eight", "d9_nine",
];

/// Writes the embedded digits (1,437 train, 360 test) as an image folder under `root`:
/// `root/{train,test}/<DIGIT_NAMES[label]>/<index>.png|jpg`, each 8x8 digit upscaled to
/// `size x size` (nearest), cycling through the file kinds grey PNG, RGB PNG, RGBA PNG,
/// 16-bit grey PNG, grey+alpha PNG and RGB JPEG (quality 95). Returns the files written.
pub fn digits_folder(root: &Path, size: u32) -> Vec<PathBuf> {
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
    let tt = wrnc_data::digits::load_digits().unwrap();
    let mut written = Vec::new();
    let mut index = 0usize;
    for (split, ds) in [("train", &tt.train), ("test", &tt.test)] {
        for i in 0..ds.len() {
            let px = ds.image(i).unwrap();
            let label = ds.label(i).unwrap() as usize;
            let dir = root.join(split).join(DIGIT_NAMES[label]);
            std::fs::create_dir_all(&dir).unwrap();
            let v = |x: u32, y: u32| px[(y * 8 / size * 8 + x * 8 / size) as usize];
            let kind = index % 6;
            index += 1;
            let path = dir.join(format!("{i:04}.{}", if kind == 5 { "jpg" } else { "png" }));
            match kind {
                0 => ImageBuffer::from_fn(size, size, |x, y| Luma([v(x, y)])).save(&path),
                1 => ImageBuffer::from_fn(size, size, |x, y| Rgb([v(x, y); 3])).save(&path),
                2 => ImageBuffer::from_fn(size, size, |x, y| {
                    let g = v(x, y);
                    Rgba([g, g, g, 255 - g / 2])
                })
                .save(&path),
                3 => ImageBuffer::from_fn(size, size, |x, y| Luma([u16::from(v(x, y)) * 257]))
                    .save(&path),
                4 => ImageBuffer::from_fn(size, size, |x, y| LumaA([v(x, y), 200])).save(&path),
                _ => {
                    let img: ImageBuffer<Rgb<u8>, Vec<u8>> =
                        ImageBuffer::from_fn(size, size, |x, y| Rgb([v(x, y); 3]));
                    let f = std::fs::File::create(&path).unwrap();
                    image::codecs::jpeg::JpegEncoder::new_with_quality(f, 95).encode_image(&img)
                }
            }
            .unwrap();
            written.push(path);
        }
    }
    written
}
