//! `stockcast train`: a point-in-time training set from the feature store's historical API,
//! walk-forward validation with an embargo, ridge or boosted trees, the ONNX export with the
//! contract (checked against the in-memory model), and registration with its metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use sha2::Digest as _;
use stockcast_model::train::{self, Algorithm, Dataset, FoldSpec, GbtParams, Report, TrainSpec};
use stockcast_model::{Contract, Model};
use stockcast_model_registry_proxy::registry::{
    ArtifactFormat, LocalRegistry, MlflowRegistry, MlflowSettings, NewVersion, Registry,
    RegistryError,
};
use stockcast_proto::stockcast::features::v1 as pb;
use stockcast_proto::stockcast::registry::v1 as registry_pb;

/// The model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelArg {
    /// Ridge regression on standardized features, closed form.
    Ridge,
    /// Gradient-boosted regression trees.
    Gbt,
}

/// `stockcast train` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// gRPC address of the feature store.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:50052",
        env = "STOCKCAST_FEATURE_STORE_ADDR"
    )]
    pub feature_store: SocketAddr,
    /// Feature view to train on.
    #[arg(long, default_value = "default")]
    pub view: String,
    /// Feature view version; 0 is the view's current version.
    #[arg(long, default_value_t = 0)]
    pub view_version: i32,
    /// Symbols whose history is the training set (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// First as-of day (UTC, inclusive); default: all stored history.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub start: Option<chrono::NaiveDate>,
    /// Last as-of day (UTC, exclusive); default: now.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub end: Option<chrono::NaiveDate>,
    /// Label horizon in bars: the forward log return over the next N bars.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub horizon: i64,
    /// Model kind.
    #[arg(long, value_enum, default_value = "gbt")]
    pub model: ModelArg,
    /// Walk-forward validation folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Distinct as-of times left out between training and validation; default and minimum:
    /// the horizon.
    #[arg(long)]
    pub embargo: Option<usize>,
    /// Ridge penalty on standardized coefficients.
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f64,
    /// Boosted trees.
    #[arg(long, default_value_t = 100)]
    pub trees: usize,
    /// Depth of each tree.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Shrinkage of each tree.
    #[arg(long, default_value_t = 0.05)]
    pub learning_rate: f32,
    /// Fewest rows in a leaf.
    #[arg(long, default_value_t = 20)]
    pub min_leaf: usize,
    /// Share of rows each tree is grown on.
    #[arg(long, default_value_t = 0.8)]
    pub subsample: f64,
    /// Seed of the row subsampling (same seed, same data: same model).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Also writes the ONNX model to this file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Registers the model under this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Local registry directory to register in.
    #[arg(long, value_name = "DIR", conflicts_with = "mlflow")]
    pub registry_dir: Option<PathBuf>,
    /// MLflow tracking server to register in, e.g. http://127.0.0.1:5050.
    #[arg(long, value_name = "URL")]
    pub mlflow: Option<String>,
    /// Points this alias (e.g. `champion`) at the new version.
    #[arg(long, requires = "name")]
    pub alias: Option<String>,
    /// Sets the alias through this model-registry-proxy (audited, announced on the bus)
    /// instead of directly in the registry.
    #[arg(long, value_name = "ADDR", requires = "alias")]
    pub registry_proxy: Option<SocketAddr>,
}

impl TrainArgs {
    /// Training settings, with the flags' errors named.
    fn spec(&self, periods_per_year: f64) -> anyhow::Result<TrainSpec> {
        let horizon = self.horizon_bars()?;
        let algorithm = match self.model {
            ModelArg::Ridge => Algorithm::Ridge {
                lambda: self.lambda,
            },
            ModelArg::Gbt => Algorithm::Gbt(GbtParams {
                trees: self.trees,
                max_depth: self.depth,
                learning_rate: self.learning_rate,
                min_leaf: self.min_leaf,
                subsample: self.subsample,
                seed: self.seed,
                ..GbtParams::default()
            }),
        };
        Ok(TrainSpec {
            algorithm,
            folds: FoldSpec {
                folds: self.folds,
                horizon: horizon as usize,
                embargo: self.embargo.unwrap_or(horizon as usize),
                min_train_rows: 50,
            },
            periods_per_year: periods_per_year / f64::from(horizon),
        })
    }

    fn horizon_bars(&self) -> anyhow::Result<i32> {
        match i32::try_from(self.horizon) {
            Ok(h) if h >= 1 => Ok(h),
            _ => anyhow::bail!("--horizon {} must be at least 1 bar", self.horizon),
        }
    }
}

/// Bars per year of a view's interval: 252 trading days of 6.5 hours.
fn periods_per_year(interval: i32) -> f64 {
    match stockcast_market::convert::interval_from_proto(interval) {
        Ok(i) if i.is_intraday() => 252.0 * 23_400.0 / i.seconds() as f64,
        _ => 252.0,
    }
}

/// The view's resolved version, feature names and bars per year.
struct ViewInfo {
    version: i32,
    periods_per_year: f64,
}

/// Reads the training set from the feature store: every stored vector of the symbols in the
/// range, with its forward-return label; rows with an absent feature or no label yet are
/// left out.
async fn load(args: &TrainArgs) -> anyhow::Result<(Dataset, ViewInfo)> {
    let horizon = args.horizon_bars()?;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", args.feature_store))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot reach the feature store at {}", args.feature_store))?;
    let mut client = pb::feature_store_service_client::FeatureStoreServiceClient::new(channel);
    let view = client
        .get_feature_view(pb::GetFeatureViewRequest {
            name: args.view.clone(),
            version: args.view_version,
        })
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "feature view {:?} version {}: {}",
                args.view,
                args.view_version,
                s.message()
            )
        })?
        .into_inner()
        .view
        .context("the feature store answered without a view")?;
    let day = |d: chrono::NaiveDate| prost_types::Timestamp {
        seconds: d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp(),
        nanos: 0,
    };
    let mut stream = client
        .get_historical_features(pb::GetHistoricalFeaturesRequest {
            feature_view: view.name.clone(),
            feature_view_version: view.version,
            entities: Some(pb::get_historical_features_request::Entities::Span(
                pb::EntitySpan {
                    symbols: args.symbols.clone(),
                    range: Some(stockcast_proto::stockcast::types::v1::TimeRange {
                        start: args.start.map(day),
                        end: args.end.map(day),
                    }),
                },
            )),
            label: Some(pb::LabelSpec {
                horizon_bars: horizon,
            }),
            max_rows_per_chunk: 0,
        })
        .await
        .map_err(|s| anyhow::anyhow!("historical features: {}", s.message()))?
        .into_inner();
    let names: Vec<String> = view.features.iter().map(|f| f.name.clone()).collect();
    let mut data = Dataset::new(names);
    let (mut seen, mut header_checked) = (0usize, false);
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("historical features stream: {}", s.message()))?
    {
        if let Some(header) = chunk.header {
            anyhow::ensure!(
                header.feature_names == data.feature_names,
                "the historical stream names features {:?}, the view {:?}",
                header.feature_names,
                data.feature_names
            );
            header_checked = true;
        }
        for row in chunk.rows {
            seen += 1;
            let time = row.timestamp.map(|t| t.seconds).unwrap_or_default();
            if let Some(label) = row.label {
                data.push(&row.symbol, time, &row.values, label);
            }
        }
    }
    anyhow::ensure!(
        header_checked || seen == 0,
        "the historical stream had no header"
    );
    anyhow::ensure!(
        !data.is_empty(),
        "no usable rows: {seen} vectors of {:?} in the range, none with every feature present \
         and a {horizon}-bar label (check --symbols, --start/--end and that bars were ingested)",
        args.symbols
    );
    tracing::info!(
        rows = data.len(),
        vectors = seen,
        "training set read (vectors without every feature or a label are left out)"
    );
    data.sort_by_time();
    Ok((
        data,
        ViewInfo {
            version: view.version,
            periods_per_year: periods_per_year(view.interval),
        },
    ))
}

/// A trained, exported and checked model.
pub struct Trained {
    /// The ONNX bytes.
    pub onnx: Vec<u8>,
    /// Its contract.
    pub contract: Contract,
    /// Validation report.
    pub report: Report,
    /// Version tags: contract, SHA-256, metrics, folds, window, baseline, provenance.
    pub tags: BTreeMap<String, String>,
}

/// Reads, trains, exports and checks; nothing is written.
pub async fn train_model(args: &TrainArgs) -> anyhow::Result<Trained> {
    let horizon = args.horizon_bars()?;
    let (data, view) = load(args).await?;
    let spec = args.spec(view.periods_per_year)?;
    let contract = Contract {
        feature_view: args.view.clone(),
        feature_view_version: view.version,
        feature_names: data.feature_names.clone(),
        target: "log_return".to_owned(),
        horizon_bars: horizon,
    };
    let (data, fitted, report) = tokio::task::spawn_blocking(move || {
        train::train(&data, &spec).map(|(fitted, report)| (data, fitted, report))
    })
    .await?
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let onnx = fitted
        .to_onnx(&contract)
        .map_err(|e| anyhow::anyhow!("export: {e}"))?;
    check_export(&onnx, &fitted, &data)?;
    let mut tags = contract.to_props();
    tags.insert(
        "sha256".to_owned(),
        format!("{:x}", sha2::Sha256::digest(&onnx)),
    );
    tags.extend(report_tags(&report, &spec, &data));
    tags.insert(
        "stockcast.train.provenance".to_owned(),
        serde_json::json!({
            "tool": format!("stockcast {}", env!("CARGO_PKG_VERSION")),
            "feature_store": args.feature_store.to_string(),
            "symbols": args.symbols,
            "trained_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
        .to_string(),
    );
    Ok(Trained {
        onnx,
        contract,
        report,
        tags,
    })
}

/// The exported model, loaded as inference loads it, reproduces the in-memory one to 1e-6.
fn check_export(onnx: &[u8], fitted: &train::Fitted, data: &Dataset) -> anyhow::Result<()> {
    let model = Model::load(onnx).map_err(|e| anyhow::anyhow!("the export does not load: {e}"))?;
    let d = data.n_features();
    let rows = data.len().min(2_000);
    let x = data.x_of(data.len() - rows..data.len());
    let got = model
        .run(x)
        .map_err(|e| anyhow::anyhow!("the export does not run: {e}"))?;
    let want = fitted.predict(x, d);
    for (r, (g, w)) in got.values.iter().zip(&want).enumerate() {
        anyhow::ensure!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "the export predicts {g} for row {r}, the trained model {w}"
        );
    }
    Ok(())
}

fn report_tags(report: &Report, spec: &TrainSpec, data: &Dataset) -> BTreeMap<String, String> {
    let time = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    let mut tags = BTreeMap::from([
        (
            "stockcast.train.algorithm".to_owned(),
            spec.algorithm.name().to_owned(),
        ),
        (
            "stockcast.train.params".to_owned(),
            spec.algorithm.params_json().to_string(),
        ),
        (
            "stockcast.train.metrics".to_owned(),
            report.overall.to_json().to_string(),
        ),
        ("stockcast.train.rows".to_owned(), report.rows.to_string()),
        (
            "stockcast.train.window".to_owned(),
            format!("{}/{}", time(report.window.0), time(report.window.1)),
        ),
        (
            "stockcast.train.folds".to_owned(),
            serde_json::json!({
                "folds": spec.folds.folds, "embargo": spec.folds.embargo,
                "horizon": spec.folds.horizon,
            })
            .to_string(),
        ),
    ]);
    for (k, fold) in report.folds.iter().enumerate() {
        tags.insert(
            format!("stockcast.train.fold.{}", k + 1),
            fold.to_json().to_string(),
        );
    }
    for (name, baseline) in train::feature_baseline(data) {
        tags.insert(format!("stockcast.baseline.{name}"), baseline.to_string());
    }
    tags
}

/// Registers `trained` as a new version of `name`; returns the version number.
pub async fn register(
    registry: &dyn Registry,
    name: &str,
    trained: &Trained,
) -> anyhow::Result<i64> {
    match registry
        .create_model(name, "stock return model trained by stockcast train")
        .await
    {
        Ok(_) | Err(RegistryError::AlreadyExists(_)) => {}
        Err(e) => anyhow::bail!("registering model {name:?}: {e}"),
    }
    let description = format!(
        "{} on {}@{}, horizon {} bars",
        trained
            .tags
            .get("stockcast.train.algorithm")
            .map_or("model", String::as_str),
        trained.contract.feature_view,
        trained.contract.feature_view_version,
        trained.contract.horizon_bars
    );
    let version = registry
        .create_version(
            name,
            NewVersion {
                format: ArtifactFormat::MlflowOnnx,
                onnx: trained.onnx.clone().into(),
                tags: trained.tags.clone(),
                description,
            },
        )
        .await
        .with_context(|| format!("registering a version of {name:?}"))?;
    Ok(version.version)
}

/// Points `alias` at `version` through the proxy (audited) or directly.
pub async fn set_alias(
    registry: &dyn Registry,
    proxy: Option<SocketAddr>,
    name: &str,
    alias: &str,
    version: i64,
) -> anyhow::Result<()> {
    let Some(proxy) = proxy else {
        return registry
            .set_alias(name, alias, version)
            .await
            .with_context(|| format!("setting alias {alias:?} of {name:?}"));
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{proxy}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the model registry proxy at {proxy}"))?;
    let mut client =
        registry_pb::model_registry_service_client::ModelRegistryServiceClient::new(channel);
    let mut request = tonic::Request::new(registry_pb::SetAliasRequest {
        name: name.to_owned(),
        alias: alias.to_owned(),
        version,
        reason: "trained by stockcast train".to_owned(),
        expected_current_version: None,
    });
    request.metadata_mut().insert(
        stockcast_model_registry_proxy::ACTOR_HEADER,
        tonic::metadata::MetadataValue::from_static("stockcast-train"),
    );
    client
        .set_alias(request)
        .await
        .map_err(|s| anyhow::anyhow!("setting alias {alias:?} of {name:?}: {}", s.message()))?;
    Ok(())
}

/// The registry the flags name, if any.
async fn registry_of(args: &TrainArgs) -> anyhow::Result<Option<Box<dyn Registry>>> {
    if let Some(dir) = &args.registry_dir {
        return Ok(Some(Box::new(
            LocalRegistry::open(dir, stockcast_runtime::clock::system())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        )));
    }
    if let Some(url) = &args.mlflow {
        let settings = MlflowSettings {
            tracking_uri: url.clone(),
            ..MlflowSettings::default()
        };
        return Ok(Some(Box::new(
            MlflowRegistry::new(&settings).map_err(|e| anyhow::anyhow!("{e}"))?,
        )));
    }
    Ok(None)
}

#[allow(clippy::print_stdout)]
pub async fn run(args: TrainArgs) -> anyhow::Result<()> {
    args.horizon_bars()?;
    let registry = registry_of(&args).await?;
    anyhow::ensure!(
        args.name.is_none() || registry.is_some(),
        "--name needs a registry: --registry-dir DIR or --mlflow URL"
    );
    anyhow::ensure!(
        args.name.is_some() || args.output.is_some(),
        "nothing to do: give --output FILE, or --name with a registry"
    );
    let trained = train_model(&args).await?;
    println!("{}", summary(&trained.report));
    if let Some(path) = &args.output {
        std::fs::write(path, &trained.onnx)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {} ({} bytes)", path.display(), trained.onnx.len());
    }
    if let (Some(name), Some(registry)) = (&args.name, registry) {
        let version = register(&*registry, name, &trained).await?;
        println!(
            "registered {name} version {version} in the {} registry",
            registry.kind()
        );
        if let Some(alias) = &args.alias {
            set_alias(&*registry, args.registry_proxy, name, alias, version).await?;
            println!("{name}@{alias} -> version {version}");
        }
    }
    Ok(())
}

/// The validation table: per fold and overall, the model against the baselines.
pub fn summary(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "fold  train  test   model: MAE       RMSE      dir.acc  IC      Sharpe | zero RMSE  momentum dir.acc  IC\n",
    );
    let mut line = |label: &str, train: usize, s: &train::Scores| {
        let _ = writeln!(
            out,
            "{label:<5} {train:>6} {:>5}  {:>9.6} {:>9.6} {:>7.3}  {:>6.3} {:>6.2} | {:>9.6} {:>7.3}  {:>6.3}",
            s.model.rows,
            s.model.mae,
            s.model.rmse,
            s.model.directional_accuracy,
            s.model.ic,
            s.model.sharpe,
            s.zero.rmse,
            s.momentum.directional_accuracy,
            s.momentum.ic,
        );
    };
    for (k, f) in report.folds.iter().enumerate() {
        line(&(k + 1).to_string(), f.fold.train.len(), &f.scores);
    }
    line("all", report.rows, &report.overall);
    out
}
