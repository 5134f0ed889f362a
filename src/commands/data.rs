//! `wrnc data fetch cifar10|cifar100|fashion_mnist|mnist [--dir DIR] [--archive PATH]`: get a
//! dataset. `wrnc data inspect DIR [--json]`: what an image folder holds.
//! `wrnc data preview SPEC -o GRID.png [--count N] [--seed S]`: a grid of augmented training
//! images.

use super::common::thousands;
use crate::exit::UsageError;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use wrnc_data::fetch;
use wrnc_recipe::DatasetKind;
use wrnc_verify::{printable, printable_path};

/// Arguments of `wrnc data`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DataCommand {
    /// Download the official archive (Fashion-MNIST, MNIST: the four IDX files), check its MD5
    /// and unpack it atomically.
    Fetch(FetchArgs),
    /// Report what an image folder (DIR/train|val|test/<class>/*.png|jpg) holds: images per
    /// class and split, sizes and modes, skipped, corrupt and duplicate files, and a spec to
    /// start from.
    Inspect(InspectArgs),
    /// Write a PNG grid of augmented training images (as the first training batch of
    /// epoch 1 would see them, denormalised and upscaled with nearest neighbour).
    Preview(PreviewArgs),
}

#[derive(clap::Args, Debug)]
struct PreviewArgs {
    #[command(flatten)]
    spec: super::common::SpecArgs,
    /// The PNG file to write.
    #[arg(short = 'o', long = "out", value_name = "GRID.png")]
    out: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    count: u64,
    /// Seed of the shuffle and augmentation draws (default: train.seed).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(clap::Args, Debug)]
struct InspectArgs {
    /// The dataset folder, holding train/ (and optionally val/, test/) with one folder per
    /// class.
    dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct FetchArgs {
    /// `cifar10`, `cifar100`, `fashion_mnist` or `mnist`.
    dataset: String,
    /// Folder to unpack into (the dataset lands in DIR/cifar-10-batches-bin,
    /// DIR/cifar-100-binary, DIR/fashion-mnist or DIR/mnist, where the specs look by default).
    #[arg(long, default_value = wrnc_recipe::DATA_DIR)]
    dir: PathBuf,
    /// Install from an already downloaded archive instead of the network (MD5 still checked);
    /// for fashion_mnist and mnist, a folder holding the four IDX files (`.gz` or plain).
    #[arg(long, value_name = "PATH")]
    archive: Option<PathBuf>,
    /// Fetch again even when the dataset is already there.
    #[arg(long)]
    force: bool,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    match a.command {
        DataCommand::Fetch(f) => fetch_cmd(f),
        DataCommand::Inspect(i) => inspect_cmd(i),
        DataCommand::Preview(p) => preview_cmd(p),
    }
}

/// Smallest side in pixels of one cell of the preview grid.
const PREVIEW_CELL: usize = 64;

fn preview_cmd(a: PreviewArgs) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    let recipe = spec.recipe();
    let data = wrnc_train::data::load_run_data(&spec.graph, &recipe)?;
    let train = &data.train;
    let (c, h, w) = (train.channels(), train.height(), train.width());
    let mut cfg = wrnc_train::data::train_batch_config(&recipe);
    cfg.batch_size = a.count as usize;
    cfg.drop_last = false;
    let seed = a.seed.unwrap_or(recipe.train.seed);
    let batch = wrnc_data::epoch_batches(train.clone(), data.norm.clone(), &cfg, 0, seed)?
        .next()
        .context("the training split holds no images")?;
    let size = c * h * w;
    let images = batch
        .images
        .chunks_exact(size)
        .map(|v| {
            let mut px = vec![0u8; size];
            data.norm.denormalize_into(v, &mut px).map(|()| px)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let (g, canvas) = wrnc_data::preview::grid(&images, c, h, w, PREVIEW_CELL);
    let png = wrnc_data::preview::encode_png(&g, c, &canvas)?;
    super::common::output_folder(&a.out)?;
    wrnc_ir::atomic::write_atomic(&a.out, &png)
        .map_err(|e| super::common::cannot_write(&a.out, &e))?;
    super::common::print_line(&format!(
        "wrote {}: {} augmented training images, {}x{} grid, each {}x{} pixels shown {}x",
        printable_path(&a.out),
        images.len(),
        g.cols,
        g.rows,
        w,
        h,
        g.scale
    ))?;
    if let Some(m) = batch.mix {
        let how = match m.window {
            _ if m.lam == 1.0 => "not mixed (the draw against `prob` said no)".to_string(),
            None => format!("mixup with lam {:.4}", m.lam),
            Some(b) => format!(
                "CutMix, rows {}..{} and columns {}..{} from the partner, lam {:.4}",
                b.top,
                b.top + b.height,
                b.left,
                b.left + b.width,
                m.lam
            ),
        };
        super::common::print_line(&format!(
            "the batch is mixed with itself reversed (image i with image {}-i): {how}",
            images.len() - 1
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How many files of a list the text report names.
const SHOWN: usize = 10;

fn inspect_cmd(a: InspectArgs) -> Result<ExitCode> {
    if !a.dir.is_dir() {
        return Err(UsageError(format!("{}: no such folder", printable_path(&a.dir))).into());
    }
    let report = wrnc_data::inspect::inspect(&a.dir).map_err(|e| match e {
        wrnc_data::DataError::Invalid { .. } => anyhow::Error::from(UsageError(e.to_string())),
        e => anyhow::Error::from(e),
    })?;
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["images"] = report.images().into();
        v["spec_snippet"] = report.spec_snippet().into();
        super::common::print_line(&serde_json::to_string_pretty(&v)?)?;
    } else {
        super::common::print_out(&render(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `n` with thousands separators.
fn n(v: usize) -> String {
    thousands(v as u64)
}

/// `n thing` or `n things`.
fn count(v: usize, thing: &str) -> String {
    format!("{} {thing}{}", n(v), if v == 1 { "" } else { "s" })
}

/// The first [`SHOWN`] items, then `... and N more`.
fn first_few(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(SHOWN)
        .map(|s| printable(s).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(", ... and {} more", n(items.len() - SHOWN)));
    }
    text
}

/// The text report of `wrnc data inspect`.
fn render(r: &wrnc_data::inspect::InspectReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let names: Vec<&str> = r.splits.iter().map(|s| s.name.as_str()).collect();
    let _ = writeln!(
        out,
        "{}: {} in {} ({}), {}",
        printable_path(&r.root),
        count(r.images(), "image"),
        count(r.splits.len(), "split"),
        names.join(", "),
        match r.classes.len() {
            1 => "1 class".to_string(),
            c => format!("{} classes", n(c)),
        }
    );
    let width = r
        .classes
        .iter()
        .map(|c| printable(c).chars().count())
        .chain(["class".len(), "total".len()])
        .max()
        .unwrap_or(5);
    let _ = write!(out, "\n{:<width$}", "class");
    for s in &r.splits {
        let _ = write!(out, "  {:>8}", s.name);
    }
    out.push('\n');
    for c in &r.classes {
        let _ = write!(out, "{:<width$}", printable(c));
        for s in &r.splits {
            let cell = s.classes.get(c).map_or("-".to_string(), |v| n(*v));
            let _ = write!(out, "  {cell:>8}");
        }
        out.push('\n');
    }
    let _ = write!(out, "{:<width$}", "total");
    for s in &r.splits {
        let _ = write!(out, "  {:>8}", n(s.images()));
    }
    out.push_str("\n\n");
    for (split, missing) in r.missing_classes() {
        let _ = writeln!(out, "{split}/ lacks the classes: {}", first_few(&missing));
    }
    for s in &r.splits {
        let empty: Vec<String> = s
            .classes
            .iter()
            .filter(|(_, v)| **v == 0)
            .map(|(c, _)| c.clone())
            .collect();
        if !empty.is_empty() {
            let _ = writeln!(
                out,
                "{}/ has classes without images: {}",
                s.name,
                first_few(&empty)
            );
        }
    }
    if r.split("test").is_none() {
        let _ = writeln!(
            out,
            "no test/ folder: the final evaluation uses val/ (or the val_size split)"
        );
    }
    // The most frequent sizes; the rest summarised (a folder of photos has hundreds).
    const SHOWN: usize = 8;
    let mut shapes: Vec<String> = r
        .shapes
        .iter()
        .take(SHOWN)
        .map(|s| format!("{}: {}", s.label(), n(s.count)))
        .collect();
    if r.shapes.len() > SHOWN {
        let rest = &r.shapes[SHOWN..];
        let range = |f: fn(&wrnc_data::inspect::ShapeCount) -> u32| {
            let lo = r.shapes.iter().map(f).min().unwrap_or(0);
            let hi = r.shapes.iter().map(f).max().unwrap_or(0);
            format!("{lo}-{hi}")
        };
        shapes.push(format!(
            "and {} other sizes and modes ({} images); widths {}, heights {} pixels",
            n(rest.len()),
            n(rest.iter().map(|s| s.count).sum()),
            range(|s| s.width),
            range(|s| s.height),
        ));
    }
    let _ = writeln!(
        out,
        "sizes and modes: {}",
        if shapes.is_empty() {
            "none (no image decoded)".to_string()
        } else {
            shapes.join("; ")
        }
    );
    if !r.skipped.is_empty() {
        let mut reasons = std::collections::BTreeMap::new();
        for s in &r.skipped {
            *reasons.entry(s.reason).or_insert(0usize) += 1;
        }
        let why: Vec<String> = reasons
            .iter()
            .map(|(k, v)| format!("{} {}", n(*v), k.describe()))
            .collect();
        let paths: Vec<String> = r.skipped.iter().map(|s| s.path.clone()).collect();
        let _ = writeln!(
            out,
            "skipped: {} ({}): {}",
            count(r.skipped.len(), "file"),
            why.join(", "),
            first_few(&paths)
        );
    }
    if !r.corrupt.is_empty() {
        let _ = writeln!(
            out,
            "corrupt: {} (they do not decode):",
            count(r.corrupt.len(), "file")
        );
        for c in r.corrupt.iter().take(SHOWN) {
            let _ = writeln!(out, "  {}: {}", printable(&c.path), printable(&c.error));
        }
        if r.corrupt.len() > SHOWN {
            let _ = writeln!(out, "  ... and {} more", n(r.corrupt.len() - SHOWN));
        }
    }
    if !r.cross_split_duplicates.is_empty() {
        let groups = &r.cross_split_duplicates;
        let _ = writeln!(
            out,
            "duplicates across splits: {} of identical files:",
            count(groups.len(), "group")
        );
        for g in groups.iter().take(SHOWN) {
            let shown: Vec<String> = g.iter().map(|p| printable(p).into_owned()).collect();
            let _ = writeln!(out, "  {}", shown.join(" = "));
        }
        if groups.len() > SHOWN {
            let _ = writeln!(out, "  ... and {} more", n(groups.len() - SHOWN));
        }
    }
    if !r.ignored.is_empty() {
        let _ = writeln!(
            out,
            "ignored (not train/, val/ or test/): {}",
            first_few(&r.ignored)
        );
    }
    if let Some(snippet) = r.spec_snippet() {
        let _ = writeln!(out, "\na spec to start from:\n");
        for line in snippet.lines() {
            let _ = writeln!(out, "  {}", printable(line));
        }
    }
    out
}

fn fetch_cmd(a: FetchArgs) -> Result<ExitCode> {
    let kind: DatasetKind = a.dataset.parse().map_err(|_| {
        UsageError(format!(
            "unknown dataset `{}`: `wrnc data fetch` knows `cifar10`, `cifar100`, \
             `fashion_mnist` and `mnist` (`digits` is embedded and needs no download)",
            a.dataset
        ))
    })?;
    let dataset_dir = fetch::dataset_dir(kind, &a.dir).ok_or_else(|| {
        UsageError(if kind.is_folder() {
            "`folder` is your own images: nothing to download (see docs/data.md)".to_string()
        } else {
            format!("`{kind}` is embedded in wrnc and needs no download")
        })
    })?;
    if !a.force && a.archive.is_none() && fetch::is_installed(kind, &a.dir) {
        eprintln!(
            "{kind} is already in {} (use --force to fetch it again)",
            dataset_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let dir = match (&a.archive, fetch::archive_spec(kind), fetch::idx_spec(kind)) {
        (Some(folder), _, Some(idx)) => {
            if !folder.is_dir() {
                return Err(UsageError(format!(
                    "{}: no such folder (for {kind}, --archive names the folder holding the \
                     four IDX files)",
                    folder.display()
                ))
                .into());
            }
            fetch::install_idx_files(folder, idx, &a.dir)?
        }
        (Some(archive), Some(spec), _) => {
            if !archive.is_file() {
                return Err(
                    UsageError(format!("{}: no such archive file", archive.display())).into(),
                );
            }
            fetch::install_archive(archive, spec.md5, &a.dir)?;
            a.dir.join(spec.dir_name)
        }
        (Some(_), None, None) => {
            return Err(UsageError(format!("`{kind}` has nothing to install")).into())
        }
        (None, _, _) => {
            eprintln!("downloading {kind} ...");
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let mut progress = |done: u64, total: Option<u64>| {
                if let Some(t) = total {
                    bar.set_length(t);
                }
                bar.set_position(done);
            };
            let r = fetch::fetch(kind, &a.dir, &mut progress);
            bar.finish_and_clear();
            r.map_err(|e| match e {
                wrnc_data::DataError::Download { .. } => {
                    anyhow::anyhow!("{e}. {}", offline_hint(kind, &a.dir))
                }
                other => other.into(),
            })?
        }
    };
    super::common::print_line(&format!("{kind} is ready in {}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// How to install `kind` without network access: download its file(s) elsewhere, then
/// `--archive`.
fn offline_hint(kind: DatasetKind, dir: &std::path::Path) -> String {
    if let Some(spec) = fetch::archive_spec(kind) {
        format!(
            "Without network access, download {} on a machine that has it and install that \
             file here with `wrnc data fetch {kind} --archive {} --dir {}` (its MD5 is checked)",
            spec.url,
            spec.file_name,
            dir.display()
        )
    } else if let Some(idx) = fetch::idx_spec(kind) {
        let names: Vec<&str> = idx.files.iter().map(|f| f.file_name).collect();
        format!(
            "Without network access, download {} from {} on a machine that has it, put them \
             in one folder and install them here with `wrnc data fetch {kind} --archive FOLDER \
             --dir {}` (their MD5s are checked)",
            names.join(", "),
            idx.mirrors.first().copied().unwrap_or_default(),
            dir.display()
        )
    } else {
        format!("`{kind}` cannot be downloaded")
    }
}
