"""The level-2 training pipeline in Kubeflow Pipelines (KFP v2), step for step the Prefect
flow's: load -> validate (per month) -> featurize and train (per family) -> select ->
evaluate the incumbent -> gate and register, with an exit handler that marks the MLflow run
failed when a step fails.

Each component is a KFP lightweight Python component whose body is one call into
:mod:`level2_training.kfp_steps`, which runs the steps of :mod:`level2_training.steps` (the
Prefect flow's), or, for the data components, into :mod:`level2_training.kfp_data_steps`
(the same data steps, with neither MLflow nor scikit-learn to import). A component's source
travels inside the compiled YAML, so it may use only what it imports itself, from the image
it runs in: an image with this project installed (the platform ``Dockerfile``; ``--image``
when compiling). ``level2 kfp run`` runs it on this machine with
``kfp.local.SubprocessRunner(use_venv=False)``: each component is a subprocess of this
virtualenv's Python, artifacts are files under the pipeline root.

No ``from __future__ import annotations`` here: KFP reads the components' annotations as
types.
"""

# KFP 2.17 reads a list of artifacts as typing.List (ruff: UP006/UP035 off in this file)
import inspect
from typing import Any, Callable, List

from kfp import compiler, dsl
from kfp.dsl import Artifact, Dataset, Input, Output

PIPELINE_NAME = "taxi-level2-training"
#: the platform image (`docker build -t taxi-mlops .`); a cluster pulls it from a registry
DEFAULT_IMAGE = "taxi-mlops:latest"


# ----------------------------------------------------------------------------- components
# Each body imports what it uses: KFP copies the function's source, not this module.


def configure(
    train_sources: list,
    val_source: dict,
    test_source: dict,
    families: list,
    trials: int,
    seed: int,
    margin: float,
    bounds: dict,
    experiment: str,
    registered_model: str,
    artifact_location: str,
    cache_dir: str,
    timeout_s: float,
    actor: str,
    reference_rows: int,
    config: Output[Artifact],
) -> list:
    """Validate the run's parameters once, as the training config the other steps read (with
    the columns the data steps load in its metadata); the families the run trains (the
    baseline first)."""
    from level2_training import kfp_steps

    arguments = {
        "train_sources": train_sources,
        "val_source": val_source,
        "test_source": test_source,
        "families": families,
        "trials": trials,
        "seed": seed,
        "margin": margin,
        "bounds": bounds,
        "experiment": experiment,
        "registered_model": registered_model,
        "artifact_location": artifact_location,
        "cache_dir": cache_dir,
        "timeout_s": timeout_s,
        "actor": actor,
        "reference_rows": reference_rows,
    }
    checked, trained, columns = kfp_steps.configure(kfp_steps.config_arguments(arguments))
    with open(config.path, "w", encoding="utf-8") as out:
        out.write(checked)
    config.metadata["columns"] = columns
    return trained


def load_month(config: Input[Artifact], source: dict, raw: Output[Dataset]) -> None:
    """One month, loaded (downloaded, read or generated) as it is."""
    from level2_training import kfp_data_steps as k

    columns = config.metadata["columns"]
    raw.metadata.update(k.load_month(k.text(config.path), source, columns, raw.path))


def validate_month(
    config: Input[Artifact], raw: Input[Dataset], role: str, clean: Output[Dataset]
) -> None:
    """The month's valid rows; what was dropped and why in the dataset's metadata."""
    from level2_training import kfp_data_steps as k

    stored = k.Stored(raw.path, raw.metadata)
    clean.metadata.update(k.validate_month(k.text(config.path), stored, role, clean.path))


def gather_months(
    config: Input[Artifact], months: Input[List[Dataset]], train: Output[Dataset]
) -> None:
    """The training months, validated, as one dataset in the order the run gave them."""
    from level2_training import kfp_data_steps as k

    stored = [k.Stored(m.path, m.metadata) for m in months]
    train.metadata.update(k.gather_months(k.text(config.path), stored, train.path))


def held_out_month(config: Input[Artifact], test: Output[Dataset]) -> None:
    """The held-back test month, validated (an empty folder when the run has none)."""
    from level2_training import kfp_data_steps as k

    columns = config.metadata["columns"]
    test.metadata.update(k.held_out_month(k.text(config.path), columns, test.path))


def start_run(
    config: Input[Artifact],
    run_key: str,
    tracking_uri: str,
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    run: Output[Artifact],
) -> None:
    """The MLflow parent run every trial nests under (its ids in the artifact's metadata)."""
    from level2_training import kfp_steps as k

    k.use_tracking(tracking_uri)
    data = (k.stored(train), k.stored(val), k.stored(test))
    ids = k.start_run(k.text(config.path), run_key, *data)
    run.metadata.update({"experiment_id": ids[0], "parent_run_id": ids[1]})
    with open(run.path, "w", encoding="utf-8") as out:
        out.write(ids[1])


def train_family(
    config: Input[Artifact],
    family: str,
    tracking_uri: str,
    run: Input[Artifact],
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    searched: Output[Artifact],
) -> None:
    """Featurize for one family and search its parameters; the best trial's record."""
    import json

    from level2_training import kfp_steps as k

    k.use_tracking(tracking_uri)
    data = (k.stored(train), k.stored(val), k.stored(test))
    ids = (run.metadata["experiment_id"], run.metadata["parent_run_id"])
    record = k.train_family(k.text(config.path), family, data, ids)
    with open(searched.path, "w", encoding="utf-8") as out:
        json.dump(record, out)
    searched.metadata.update({"family": family, "val_rmse": record["val_metrics"]["rmse"]})


def select_best(
    config: Input[Artifact],
    tracking_uri: str,
    searched: Input[List[Artifact]],
    train: Input[Dataset],
    val: Input[Dataset],
) -> str:
    """The winner (JSON); its training data logged as the drift monitor's reference."""
    import json

    from level2_training import kfp_steps as k

    k.use_tracking(tracking_uri)
    records = k.records([s.path for s in searched])
    months = k.Stored(train.path, train.metadata)
    chosen = k.select_best(k.text(config.path), records, months, k.Stored(val.path, val.metadata))
    return json.dumps(chosen)


def score_held_out(
    config: Input[Artifact],
    tracking_uri: str,
    searched: Input[List[Artifact]],
    test: Input[Dataset],
) -> str:
    """The chosen model and the baseline on the held-back month (JSON; {} without one)."""
    import json

    from level2_training import kfp_steps as k

    k.use_tracking(tracking_uri)
    records = k.records([s.path for s in searched])
    held_out = k.score_held_out(k.text(config.path), records, k.Stored(test.path, test.metadata))
    return json.dumps(held_out)


def evaluate_incumbent(config: Input[Artifact], tracking_uri: str, val: Input[Dataset]) -> str:
    """The incumbent's version and RMSE on the validation month (JSON; nulls without one)."""
    import json

    from level2_training import kfp_steps as k

    k.use_tracking(tracking_uri)
    incumbent = k.evaluate_incumbent(k.text(config.path), k.Stored(val.path, val.metadata))
    return json.dumps(incumbent)


def gate_and_register(
    config: Input[Artifact],
    tracking_uri: str,
    run: Input[Artifact],
    incumbent: str,
    held_out: str,
    searched: Input[List[Artifact]],
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    result: Output[Artifact],
) -> None:
    """Register the winner as ``candidate``, ``champion`` if the gate lets it; the result."""
    import json

    from level2_training import kfp_steps as k

    k.use_tracking(tracking_uri)
    records = k.records([s.path for s in searched])
    data = (k.stored(train), k.stored(val), k.stored(test))
    ids = (run.metadata["experiment_id"], run.metadata["parent_run_id"])
    scores = (json.loads(incumbent), json.loads(held_out))
    outcome = k.gate_and_register(k.text(config.path), records, scores, ids, data)
    with open(result.path, "w", encoding="utf-8") as out:
        json.dump(outcome, out, indent=2, default=str)
    result.metadata.update({"version": outcome["registered"]["version"]})


def finish(experiment: str, run_key: str, tracking_uri: str) -> str:
    """Exit handler: the MLflow run of a pipeline that stopped half-way is marked failed."""
    from level2_training import kfp_steps as k

    k.use_tracking(tracking_uri)
    return k.finish(experiment, run_key)


COMPONENTS: tuple[Callable[..., Any], ...] = (
    configure,
    load_month,
    validate_month,
    gather_months,
    held_out_month,
    start_run,
    train_family,
    select_best,
    score_held_out,
    evaluate_incumbent,
    gate_and_register,
    finish,
)


# ------------------------------------------------------------------------------- pipeline


def build_pipeline(image: str = DEFAULT_IMAGE, packages: tuple[str, ...] = ()) -> Any:
    """The pipeline, its components running in ``image`` (with ``packages`` pip-installed
    first: a cluster with an image without this project could install it that way)."""
    c = {
        f.__name__: dsl.component(
            f,
            base_image=image,
            packages_to_install=list(packages) or None,
            install_kfp_package=False,
        )
        for f in COMPONENTS
    }

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="NYC taxi trip duration, level 2: validate months, search model families, "
        "register the best with the champion gate (MLflow registry).",
    )
    def training_pipeline(
        train_sources: list,
        val_source: dict,
        run_key: str,
        test_source: dict = {},  # noqa: B006 - KFP needs literal defaults
        families: list = ["linear", "ridge", "hgb"],  # noqa: B006 - KFP needs literal defaults
        trials: int = 10,
        seed: int = 0,
        margin: float = 0.01,
        bounds: dict = {},  # noqa: B006
        experiment: str = "taxi-trip-duration",
        registered_model: str = "taxi-trip-duration",
        artifact_location: str = "",
        cache_dir: str = "",
        timeout_s: float = 60.0,
        actor: str = "kubeflow pipeline",
        reference_rows: int = 20000,
        tracking_uri: str = "",
    ) -> None:
        parameters = dict(locals())  # first: the pipeline's parameters, nothing else yet
        exit_task = c["finish"](experiment=experiment, run_key=run_key, tracking_uri=tracking_uri)
        with dsl.ExitHandler(exit_task, name="mark-failed-runs"):
            cfg = c["configure"](**_taken_by(configure, parameters))
            # Artifacts, not parameters, go into the fan-outs: KFP 2.17's local runner replaces
            # a task's output parameter passed into a ParallelFor with the loop item.
            data = _load_data(c, cfg.outputs["config"], train_sources, val_source)
            _train_and_register(c, cfg, (run_key, tracking_uri), data)

    return training_pipeline


def _taken_by(component: Callable[..., Any], values: dict[str, Any]) -> dict[str, Any]:
    """The values a component takes, by its parameters' names."""
    return {k: v for k, v in values.items() if k in inspect.signature(component).parameters}


def _load_data(
    c: dict[str, Any], config: Any, train_sources: Any, val_source: Any
) -> tuple[Any, Any, Any]:
    """Load and validate each training month (a fan-out), gather them; the validation month;
    the held-back test month (an empty dataset without one)."""
    with dsl.ParallelFor(train_sources) as source:
        loaded = c["load_month"](config=config, source=source).set_retry(2)
        checked = c["validate_month"](config=config, raw=loaded.output, role="train")
    months = dsl.Collected(checked.outputs["clean"])
    train = c["gather_months"](config=config, months=months).output
    val_loaded = c["load_month"](config=config, source=val_source).set_retry(2)
    val = c["validate_month"](config=config, raw=val_loaded.output, role="val").output
    test = c["held_out_month"](config=config).set_retry(2).output
    return train, val, test


def _train_and_register(
    c: dict[str, Any], cfg: Any, run_ids: tuple[Any, Any], data: tuple[Any, Any, Any]
) -> None:
    """The parent run, a search per family (a fan-out), the winner, the incumbent, the gate.
    ``run_ids`` are the pipeline's ``run_key`` and ``tracking_uri`` parameters."""
    run_key, tracking_uri = run_ids
    config, (train, val, test) = cfg.outputs["config"], data
    common = {"config": config, "tracking_uri": tracking_uri}
    months = {"train": train, "val": val, "test": test}
    run = c["start_run"](run_key=run_key, **months, **common)
    with dsl.ParallelFor(cfg.outputs["Output"]) as family:
        trained = c["train_family"](family=family, run=run.output, **months, **common)
    # one Collected per consumer: KFP 2.17's compiler fails on a shared one
    searched = trained.outputs["searched"]
    best = c["select_best"](searched=dsl.Collected(searched), train=train, val=val, **common)
    held_out = c["score_held_out"](searched=dsl.Collected(searched), test=test, **common)
    incumbent = c["evaluate_incumbent"](val=val, **common).after(best, held_out)
    # downloads and the registry meet the network: they retry, as the Prefect tasks do
    c["gate_and_register"](
        incumbent=incumbent.output,
        held_out=held_out.output,
        searched=dsl.Collected(searched),
        run=run.output,
        **months,
        **common,
    ).set_retry(2)


def compile_pipeline(path: str, image: str = DEFAULT_IMAGE, packages: tuple[str, ...] = ()) -> None:
    """Write the pipeline's IR YAML (what a KFP endpoint runs) to ``path``."""
    compiler.Compiler().compile(pipeline_func=build_pipeline(image, packages), package_path=path)
