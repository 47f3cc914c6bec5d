//! `pgstress k8s render` prints the manifests of a run on N agents; `pgstress k8s entrypoint`
//! is the command of their pods.

pub mod entrypoint;
pub mod manifests;

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
    Ok(Status::Completed)
}
