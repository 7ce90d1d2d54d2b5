//! `modproxy new`: scaffolds a ready-to-run backend in Rust, Python or Node, optionally registered in a
//! proxy config.
//!
//! Until the SDKs are published to crates.io, PyPI and npm, a generated project depends on the SDK by a
//! path computed from where the project is generated: the release's `sdk/` folder (the wheel, the npm
//! tarballs, the crate) when this binary runs from a release, else the Module Proxy checkout it was built
//! from. Everything that can be refused (names, the directory, the config edit) is checked before the
//! first file is written.

mod names;
mod paths;
mod register;
mod sdk;
mod templates;

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

pub use names::{validate_module, validate_name, NameError, MODULE_RULE, NAME_RULE};
pub use register::{register, RegisterError};

use crate::config::{Config, ConfigError};
pub use sdk::Sdk;
use templates::Template;

/// The checkout whose SDKs a generated project depends on when neither `--sdk-root` nor a release's
/// `sdk/` folder beside this binary says otherwise: the one this binary was built from.
pub const DEFAULT_SDK_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The language of the generated backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Cargo project on `modproxy-sdk`.
    Rust,
    /// A Python project on the `modproxy_sdk` package.
    #[value(alias = "py")]
    Python,
    /// A Node.js project on the `modproxy-sdk` npm package.
    #[value(alias = "js")]
    Node,
}

impl Lang {
    fn templates(self) -> &'static [Template] {
        match self {
            Lang::Rust => templates::RUST,
            Lang::Python => templates::PYTHON,
            Lang::Node => templates::NODE,
        }
    }

    /// The templates' placeholder for the SDK dependency (see [`sdk::Dependency::manifest_text`]).
    fn sdk_placeholder(self) -> &'static str {
        match self {
            Lang::Rust => "sdk_rust",
            Lang::Python => "sdk_python",
            Lang::Node => "node_dependencies",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Node => "Node",
        }
    }
}

/// `modproxy new`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct NewArgs {
    /// The project's name: a lowercase letter, then lowercase letters, digits, '-' or '_', ending in a
    /// letter or digit, at most 64 characters (a valid Cargo, npm and Python package name).
    pub name: String,
    /// The backend's language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// The module: the URL segment the proxy routes to the backend (letters, digits, '-', '_').
    /// Default: NAME.
    #[arg(long = "module", value_name = "MOD")]
    pub module: Option<String>,
    /// The port the backend listens on (127.0.0.1:N). Default: a port that is free right now.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// The project's directory; it must not exist yet, or be empty. Default: ./NAME.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Also add the module to this proxy config file (e.g. conf/default.toml), keeping its comments and
    /// layout. Refused if any module list there already has that module.
    #[arg(long, value_name = "CONF")]
    pub register: Option<PathBuf>,
    /// Where the project gets the SDK (by path, until the SDKs are published): a release's sdk/ folder
    /// or its HOME, or a Module Proxy checkout holding sdk-rust/, sdk-python/ and sdk-node/. Default:
    /// HOME/sdk when this binary is a release's HOME/bin/modproxy, else the checkout it was built from.
    #[arg(long, value_name = "DIR")]
    pub sdk_root: Option<PathBuf>,
}

/// Why `modproxy new` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// NAME or MOD is not acceptable.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The target directory has files in it.
    #[error("{0} already exists and is not empty; choose another --dir, or empty it")]
    DirNotEmpty(PathBuf),
    /// The target path is a file.
    #[error("{0} already exists and is not a directory; choose another --dir")]
    NotADirectory(PathBuf),
    /// The SDK was not found.
    #[error(
        "{root} does not hold the {lang} SDK ({missing} is missing); pass --sdk-root DIR: a release's sdk/ folder or a Module Proxy checkout"
    )]
    NoSdk {
        /// Where it was looked for.
        root: PathBuf,
        /// The language.
        lang: &'static str,
        /// The file that was expected.
        missing: String,
    },
    /// A path that cannot be written into Cargo.toml or package.json as it is.
    #[error("the path {0:?} holds a quote, a backslash, a control character or is not UTF-8, so it cannot be written into the project's manifest; generate the project elsewhere")]
    UnwritablePath(PathBuf),
    /// The config file could not be extended.
    #[error("{conf}: {source}")]
    Register {
        /// The config file.
        conf: PathBuf,
        /// Why.
        source: RegisterError,
    },
    /// The config file is not one the proxy accepts, before or after the edit.
    #[error("{0} (nothing was generated; fix the config first)")]
    Config(ConfigError),
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// To what.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ScaffoldError {
    let path = path.to_owned();
    move |source| ScaffoldError::Io { action, path, source }
}

/// What was generated, for the next steps.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The language.
    pub lang: Lang,
    /// The project's name.
    pub name: String,
    /// The module it is (to be) registered as.
    pub module: String,
    /// The project directory as the user named it (relative paths stay relative).
    pub dir: PathBuf,
    /// The backend's default listen address.
    pub listen: String,
    /// The config it was registered in (absolute), and the proxy's URL for the module according to
    /// that config.
    pub registered: Option<(PathBuf, String)>,
    /// The SDK folder it depends on.
    pub sdk: Sdk,
}

/// Generates the project `args` describe; relative paths in `args` resolve against `cwd`.
pub fn generate(args: &NewArgs, cwd: &Path) -> Result<Generated, ScaffoldError> {
    validate_name(&args.name)?;
    let module = args.module.clone().unwrap_or_else(|| args.name.clone());
    validate_module(&module)?;

    let sdk = match &args.sdk_root {
        Some(root) => sdk::classify(&cwd.join(root)),
        None => sdk::beside_binary()
            .map(Sdk::Release)
            .unwrap_or_else(|| Sdk::Checkout(PathBuf::from(DEFAULT_SDK_ROOT))),
    };
    let no_sdk = |missing: String| ScaffoldError::NoSdk {
        root: sdk.root().to_owned(),
        lang: args.lang.label(),
        missing,
    };
    let sdk = sdk.canonical().ok_or_else(|| no_sdk(String::from("the directory")))?;
    let dependency = sdk.dependency(args.lang).map_err(no_sdk)?;

    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    let project = paths::resolve_new(&cwd.join(&dir)).map_err(io_error("resolve", &dir))?;
    match std::fs::read_dir(&project) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ScaffoldError::DirNotEmpty(dir));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) if project.exists() => return Err(ScaffoldError::NotADirectory(dir)),
        Err(e) => return Err(io_error("read", &dir)(e)),
    }

    let port = match args.port {
        Some(port) => port,
        None => free_port().map_err(io_error("find a free port on", Path::new("127.0.0.1")))?,
    };
    let listen = format!("127.0.0.1:{port}");

    // The config edit is computed, and checked by the proxy's own loader, before anything is written.
    let registration = match &args.register {
        Some(conf) => Some(plan_registration(&cwd.join(conf), &module, &listen)?),
        None => None,
    };

    let sdk_text = dependency
        .manifest_text(&project)
        .ok_or_else(|| ScaffoldError::UnwritablePath(sdk.root().to_owned()))?;
    let port_text = port.to_string();
    let values = [
        ("name", args.name.as_str()),
        ("module", module.as_str()),
        ("port", port_text.as_str()),
        ("listen", listen.as_str()),
        (args.lang.sdk_placeholder(), sdk_text.as_str()),
    ];
    for template in args.lang.templates() {
        let path = project.join(template.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error("create", parent))?;
        }
        std::fs::write(&path, templates::render(template.text, &values)).map_err(io_error("write", &path))?;
    }

    let registered = match registration {
        Some(Registration { conf, text, url }) => {
            std::fs::write(&conf, text).map_err(io_error("write", &conf))?;
            Some((conf, url))
        }
        None => None,
    };
    Ok(Generated {
        lang: args.lang,
        name: args.name.clone(),
        module,
        dir,
        listen,
        registered,
        sdk,
    })
}

/// A config edit, computed and checked, not yet written.
struct Registration {
    conf: PathBuf,
    text: String,
    /// Where that config's proxy serves the module.
    url: String,
}

/// Adds the module to `conf`'s text and checks the result with the proxy's own loader; refuses a
/// config the proxy would refuse already.
fn plan_registration(conf: &Path, module: &str, listen: &str) -> Result<Registration, ScaffoldError> {
    let text = std::fs::read_to_string(conf).map_err(io_error("read", conf))?;
    let home = conf.parent().unwrap_or(Path::new("."));
    Config::parse(&text, conf, home).map_err(ScaffoldError::Config)?;
    let edited = register(&text, module, listen).map_err(|source| ScaffoldError::Register {
        conf: conf.to_owned(),
        source,
    })?;
    let config = Config::parse(&edited, conf, home).map_err(ScaffoldError::Config)?;
    // A proxy bound to every address is reached on the loopback one.
    let host = match config.server.listen {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    Ok(Registration {
        conf: conf.to_owned(),
        text: edited,
        url: format!(
            "http://{}/{module}/",
            std::net::SocketAddr::new(host, config.server.port)
        ),
    })
}

/// A port that nobody on 127.0.0.1 listens on right now.
fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl Generated {
    /// What to do next, as printed by `modproxy new`.
    pub fn next_steps(&self) -> String {
        let dir = self.dir.display();
        let listen = &self.listen;
        let mut out = format!(
            "Created the {} backend '{}' in {dir}: module '{}', listening on {listen}.\n\nNext steps:\n  cd {dir}\n",
            self.lang.label(),
            self.name,
            self.module,
        );
        let steps: &[(&str, &str)] = match self.lang {
            Lang::Rust => &[("cargo test", "build it and run its tests"), ("cargo run", "serve")],
            Lang::Python => &[
                ("python3 -m venv .venv && . .venv/bin/activate", "a virtual environment"),
                match self.sdk {
                    Sdk::Release(_) => ("pip install -e '.[test]'", "the SDK too, from the release's wheel"),
                    Sdk::Checkout(_) => ("pip install -e '.[test]'", "the SDK too (builds its Rust core once)"),
                },
                ("pytest", "run its tests"),
                ("python app.py", "serve"),
            ],
            Lang::Node => &[
                ("npm install", "installs the SDK"),
                ("npm test", "run its tests"),
                ("node index.js", "serve"),
            ],
        };
        for (command, why) in steps {
            out.push_str(&format!("  {command:<48} # {why}\n"));
        }
        if let (Lang::Node, Sdk::Checkout(root)) = (self.lang, &self.sdk) {
            if !paths::has_node_addon(&root.join("sdk-node")) {
                out.push_str(&format!(
                    "  (the Node SDK is not built yet: cd {}/sdk-node && npm install && npm run build)\n",
                    root.display()
                ));
            }
        }
        let example = r#"'{"head":{"method":"add"},"data":{"a":2,"b":3}}'"#;
        match &self.registered {
            Some((conf, url)) => {
                out.push_str(&format!(
                    "\nThe module is registered in {}. In another terminal, start the proxy and call the backend:\n  {}\n  curl -s {url} -d {example}   # {{\"sum\":5}}\n",
                    conf.display(),
                    proxy_command(conf),
                ));
            }
            None => {
                out.push_str(&format!(
                    "\nThen register the module with the proxy (or rerun with --register conf/default.toml): in its\nconf/default.toml, under [module],\n  module_socket = [ {{ module = \"{}\", forward_pass = \"{listen}\", pipeline = 16 }} ]\nrestart the proxy, and call the backend:\n  curl -s http://127.0.0.1:8080/{}/ -d {example}   # {{\"sum\":5}}\n",
                    self.module, self.module
                ));
            }
        }
        out
    }
}

/// How to start the proxy on `conf`: by its HOME when it sits at `HOME/conf/default.toml`, so that the
/// proxy finds `HOME/html` too; else by the file.
fn proxy_command(conf: &Path) -> String {
    let home = conf
        .parent()
        .filter(|dir| conf.ends_with("conf/default.toml") && dir.ends_with("conf"))
        .and_then(Path::parent);
    match home {
        Some(home) => format!("modproxy --home {}", home.display()),
        None => format!("modproxy --config {}", conf.display()),
    }
}

/// `modproxy new`: generates, then prints the next steps.
pub fn run(args: &NewArgs) -> Result<(), ScaffoldError> {
    let cwd = std::env::current_dir().map_err(io_error("read", Path::new("the current directory")))?;
    let generated = generate(args, &cwd)?;
    print!("{}", generated.next_steps());
    Ok(())
}
