//! `pgstress k8s render` prints the manifests of a run on N agents; `pgstress k8s entrypoint`
//! is the command of their pods.

pub mod entrypoint;
pub mod manifests;
pub mod watcher;

use std::io::Write;

use anyhow::Context;

use crate::Status;
use crate::cli::{K8sArgs, K8sCommand};
use crate::config::k8s::{RenderConfig, role};

pub fn k8s(args: K8sArgs, out: &mut impl Write) -> anyhow::Result<Status> {
    match args.command {
        K8sCommand::Render(args) => render(&RenderConfig::from_args(*args)?, out),
        K8sCommand::Entrypoint(args) => {
            let index = std::env::var("JOB_COMPLETION_INDEX").ok();
            let code = entrypoint::start(role(args, index.as_deref())?)?;
            Ok(Status::Run(code))
        }
    }
}

pub fn render(config: &RenderConfig, out: &mut impl Write) -> anyhow::Result<Status> {
    let yaml = manifests::to_yaml(&manifests::manifests(config))
        .context("cannot write the manifests as YAML")?;
    out.write_all(yaml.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot print the manifests")?;
    if let Some(patch) = &config.watcher {
        let yaml = manifests::to_yaml(&[watcher::patch(config, patch)])
            .context("cannot write the watcher's patch as YAML")?;
        std::fs::write(&patch.file, yaml).with_context(|| {
            format!(
                "cannot write the watcher's patch to {}; give --watcher-patch a file in a folder you may write",
                patch.file.display()
            )
        })?;
    }
    Ok(Status::Completed)
}
