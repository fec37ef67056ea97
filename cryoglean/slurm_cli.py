"""``cryoglean slurm``: render Slurm batch scripts for cryoglean's and external pickers."""

from __future__ import annotations

from pathlib import Path

import click

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group("slurm", context_settings=_CTX)
def slurm_group() -> None:
    """Write Slurm batch scripts that train and run pickers on a cluster.

    \b
    Scripts come from Jinja templates shipped with cryoglean (cryoglean slurm templates) and a
    cluster profile (partition, account, QoS, GPUs, CPUs, memory, time, modules, container,
    environment, extra #SBATCH lines) from a YAML file of named profiles (--profiles FILE;
    the built-in file has 'example' and 'cpu'). Every value that reaches the shell is quoted.
    """


@slurm_group.command("render", context_settings=_CTX)
@click.argument("template")
@click.option("--profile", "profile_name", required=True, help="Profile name in the profiles file.")
@click.option("--profiles", "profiles_file", type=click.Path(dir_okay=False, exists=True),
              help="YAML file of named profiles (default: the built-in example profiles).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="A template value, e.g. --set db=/data/catalog.db; repeat a key for a list.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here (default: stdout).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
def render_command(template, profile_name, profiles_file, sets, output, force):
    """Render TEMPLATE (e.g. train_centernet) for a profile.

    `cryoglean slurm templates` lists templates with the values each one needs.
    """
    from cryoglean import slurm

    text = slurm.render(template, slurm.get_profile(profile_name, profiles_file), slurm.parse_sets(sets))
    if output:
        path = slurm.write_script(text, output, force=force)
        click.echo(f"wrote {path}")
    else:
        click.echo(text, nl=False)


@slurm_group.command("pipeline", context_settings=_CTX)
@click.argument("name")
@click.option("--profile", "profile_name", required=True, help="Profile name in the profiles file.")
@click.option("--profiles", "profiles_file", type=click.Path(dir_okay=False, exists=True),
              help="YAML file of named profiles (default: the built-in example profiles).")
@click.option("--profile-for", "profile_for", multiple=True, metavar="STEP=PROFILE",
              help="Run one step kind with another profile of the file, e.g. crawl=cpu, "
                   "train=gpu (repeat); the others use --profile.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="A pipeline value.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the scripts and submit.sh.")
@click.option("--submit", is_flag=True, help="Submit the chain now (sbatch) and print the job IDs.")
@click.option("--force", is_flag=True, help="Replace scripts in a non-empty directory.")
def pipeline_command(name, profile_name, profiles_file, profile_for, sets, out_dir, submit,
                     force):
    """Write a chain of jobs with dependencies plus a submit.sh that submits it.

    \b
    Pipelines:
      centernet  [crawl ->] export thi -> train centernet -> pick (array) -> evaluate
                 values: db, workdir [, roots, project, exp_id, num_epoch, batch_size, shards,
                 threshold, diameter, train_extra]
      dynamicdet [crawl ->] export yolo -> train dynamicdet step1 -> step2 -> detect (array)
                 -> star -> evaluate; values: db, workdir [, roots, project, weight, epochs,
                 epochs2, img_size, shards, threshold, conf_thres, easy_fraction, conf,
                 diameter, ...]
      partinet   PartiNet container: denoise -> detect -> star
                 values: source, workdir, weight [, conf_thres, iou_thres, conf]
      tomo       [crawl ->] export cetpick -> tomo-files + train tomo -> pick tomo (array
                 over tomograms) -> evaluate
                 values: db, workdir [, roots, project, label_fraction, exp_id, bbox,
                 num_epochs, lr, K, threshold, out_thresh, shards, train_extra]
    The pick job (dynamicdet: detect, tomo: pick tomo) uses the threshold the trained run
    chose (its val_metrics.json: the best-F1 one on its validation set; dynamicdet: the step-2
    run's) and the evaluate job the particle diameter of the export's manifest.json (tomo:
    bbox), both read when the jobs run (cryoglean slurm value); --set threshold=X or --set
    diameter=PX fixes them instead. Where the run has no validation result the pick job uses
    the picker's own value: 0.3 (centernet), conf_thres 0.1 (dynamicdet), out_thresh 0.2
    (tomo). The dynamicdet star step filters again only with --set conf=X.
    submit.sh records the job IDs in jobids.txt next to it.
    """
    from cryoglean import slurm

    profile = slurm.get_profile(profile_name, profiles_file)
    per_step = {step: slurm.get_profile(prof, profiles_file)
                for step, prof in slurm.parse_sets(profile_for).items()}
    paths = slurm.write_pipeline(name, profile, slurm.parse_sets(sets), out_dir, force=force,
                                 step_profiles=per_step)
    for path in paths:
        click.echo(f"wrote {path}")
    if submit:
        for step, job in slurm.submit_pipeline(out_dir):
            click.echo(f"{step}\t{job}")
    else:
        click.echo(f"submit with: bash {Path(out_dir) / 'submit.sh'}")


@slurm_group.command("value", context_settings=_CTX)
@click.argument("kind", type=click.Choice(["threshold", "diameter"]))
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--default", "default", type=float, default=None,
              help="Print this when the run or export does not hold the value (a note on "
                   "stderr says so); without it that is an error.")
def value_command(kind, path, default):
    """Print one number a pipeline job reads when it runs: the pick threshold a training run
    chose (KIND threshold, PATH the run folder: its val_metrics.json, the best-F1 threshold)
    or the particle diameter in px an export recorded (KIND diameter, PATH the export: its
    manifest.json). Where it came from goes to stderr (the job's log).
    """
    from cryoglean.slurm_runtime import read_value

    value, note = read_value(kind, path, default)
    click.echo(f"{kind} {value} {note}", err=True)
    click.echo(str(value))


@slurm_group.command("templates", context_settings=_CTX)
def templates_command():
    """List the shipped templates and the values each one takes."""
    from cryoglean import slurm

    for name, info in slurm.list_templates().items():
        kind = "external" if info.external else "cryoglean"
        click.echo(f"{name:<20} [{kind}{', GPU' if info.gpu else ''}{', array' if info.array else ''}] {info.description}")
        opt = ", ".join(f"{k}={v!r}" for k, v in info.optional.items())
        click.echo(f"{'':<20} needs: {', '.join(info.required)}" + (f"; optional: {opt}" if opt else ""))


@slurm_group.command("profiles", context_settings=_CTX)
@click.option("--profiles", "profiles_file", type=click.Path(dir_okay=False, exists=True),
              help="YAML file of named profiles (default: the built-in example profiles).")
@click.option("--keys", is_flag=True, help="List every profile key with its default and meaning.")
def profiles_command(profiles_file, keys):
    """List the profiles of a profiles file (or, with --keys, every profile key)."""
    from cryoglean import slurm

    if keys:
        for key, (default, what) in slurm.PROFILE_KEYS.items():
            click.echo(f"{key:<18} default {default!r:<12} {what}")
        return
    for name, prof in slurm.load_profiles(profiles_file).items():
        gpus = f"{prof['gpus']} GPU" if prof["gpus"] else "CPU"
        click.echo(f"{name:<12} partition={prof['partition'] or '(default)'} {gpus} cpus={prof['cpus']} "
                   f"mem={prof['mem']} time={prof['time']}")
