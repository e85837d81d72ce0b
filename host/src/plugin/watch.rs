//! Hot reload on file change: watch each plugin file's directory and reload
//! the slot when its file is written or replaced (debounced, so a build that
//! writes in several steps triggers one reload).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};

use crate::app::App;

/// Quiet period after the last change before reloading.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Start watching; the watcher lives as long as the returned task.
pub fn spawn(app: &App) -> Result<(), notify::Error> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_)) {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
        }
    })?;
    let mut by_path: HashMap<PathBuf, String> = HashMap::new();
    let adapters = app
        .plugins
        .iter()
        .map(|(name, slot)| (name, &slot.config.path));
    let metrics = app
        .metric_plugins
        .iter()
        .map(|(name, slot)| (name, &slot.config.path));
    for (name, configured) in adapters.chain(metrics) {
        let path = std::fs::canonicalize(configured).unwrap_or_else(|_| configured.clone());
        if let Some(dir) = path.parent() {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        by_path.insert(path, name.clone());
    }
    let app = app.clone();
    tokio::spawn(async move {
        let _watcher = watcher; // dropped (and stopped) with this task
        while let Some(first) = rx.recv().await {
            let mut changed = vec![first];
            // Debounce: collect every change until the directory is quiet.
            while let Ok(Some(path)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                changed.push(path);
            }
            let mut names: Vec<&String> = changed.iter().filter_map(|p| by_path.get(p)).collect();
            names.sort();
            names.dedup();
            for name in names {
                let outcome = if let Some(slot) = app.plugins.get(name) {
                    slot.reload(&app.runtime, Some(app.plugin_cache.clone()))
                        .await
                } else if let Some(slot) = app.metric_plugins.get(name) {
                    slot.reload(&app.runtime).await
                } else {
                    continue;
                };
                tracing::info!(plugin = %name, ?outcome, "plugin file changed");
            }
        }
    });
    Ok(())
}
