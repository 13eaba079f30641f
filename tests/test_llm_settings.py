"""Settings: where each option and key comes from, and one-line errors (exit code 2) before anything is sent."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from judge_server import JudgeServer

from ecac_bench.cli import main
from ecac_bench.llm import ClientConfig, ClientConfigError, Endpoint, ImageRule, LLMClient, Settings
from ecac_bench.llm.settings import check_api_key, check_base_url, public_url

ENV = {
    "ECAC_JUDGE_MODEL": "env-model",
    "ECAC_JUDGE_BASE_URL": "http://ecac:1/v1",
    "OPENAI_BASE_URL": "http://openai:2/v1",
    "OPENAI_API_KEY": "sk-openai",
}


def judge_of(env, **flags):
    return Settings.from_env(env, **flags).client_config("judge")


def test_precedence_flag_then_ecac_then_sdk_then_default():
    config = judge_of(ENV)
    assert (config.model, config.endpoint.base_urls) == ("env-model", ("http://ecac:1/v1",))
    config = judge_of(ENV, judge_model="flag", judge_base_url=["http://flag/v1"], judge_api_key="sk-flag")
    assert (config.model, config.endpoint.base_urls, config.endpoint.api_key) == (
        "flag",
        ("http://flag/v1",),
        "sk-flag",
    )
    assert judge_of({**ENV, "ECAC_JUDGE_API_KEY": "sk-ecac"}).endpoint.api_key == "sk-ecac"
    no_url = judge_of({"ECAC_JUDGE_MODEL": "m"})
    assert no_url.endpoint.base_urls == ("https://api.openai.com/v1",) and no_url.endpoint.api_key == "EMPTY"
    with pytest.raises(ClientConfigError, match="ECAC_JUDGE_MODEL"):
        judge_of({})


def test_the_sdk_key_goes_only_to_the_sdk_url():
    # A URL from an ECAC_* variable or a flag never gets OPENAI_API_KEY ...
    assert judge_of(ENV).endpoint.api_key == "EMPTY"
    assert judge_of(ENV, judge_base_url=["http://flag/v1"]).endpoint.api_key == "EMPTY"
    # ... the SDK's own URL does: OPENAI_BASE_URL, or the SDK default.
    sdk = {k: v for k, v in ENV.items() if k != "ECAC_JUDGE_BASE_URL"}
    assert judge_of(sdk).endpoint.api_key == "sk-openai"
    default = {"ECAC_JUDGE_MODEL": "m", "OPENAI_API_KEY": "sk-openai"}
    assert judge_of(default).endpoint.base_urls == ("https://api.openai.com/v1",)
    assert judge_of(default).endpoint.api_key == "sk-openai"


def test_each_endpoint_has_its_own_key():
    env = {**ENV, "ECAC_JUDGE_API_KEY": "sk-judge"}
    same = Settings.from_env(env, vlm_model="vlm")
    vlm = same.client_config("vlm")
    assert (vlm.model, vlm.endpoint.base_urls, vlm.endpoint.api_key) == ("vlm", ("http://ecac:1/v1",), "sk-judge")
    own = Settings.from_env({**env, "ECAC_VLM_API_KEY": "sk-vlm"}, vlm_base_url=["http://vlm:3/v1"])
    vlm = own.client_config("vlm")
    assert (vlm.endpoint.base_urls, vlm.endpoint.api_key, vlm.model) == (("http://vlm:3/v1",), "sk-vlm", "env-model")
    bare = Settings.from_env(env, vlm_base_url=["http://vlm:3/v1"]).client_config("vlm")
    assert bare.endpoint.api_key == "EMPTY"  # never the judge's key
    from_env = Settings.from_env({**env, "ECAC_VLM_BASE_URL": "http://vlm:4/v1", "ECAC_VLM_MODEL": "v"})
    assert from_env.client_config("vlm").endpoint.base_urls == ("http://vlm:4/v1",)
    with pytest.raises(ClientConfigError, match="--vlm-api-key: a key belongs to an endpoint"):
        Settings.from_env(env, vlm_api_key="sk-vlm")


def test_several_urls_one_key():
    config = judge_of(ENV, judge_base_url=["http://a:1/v1,http://b:2/v1", "http://c:3/v1"], judge_api_key="sk-x")
    assert config.endpoint.base_urls == ("http://a:1/v1", "http://b:2/v1", "http://c:3/v1")
    assert config.describe()["base_url"] == "http://a:1/v1, http://b:2/v1, http://c:3/v1"
    env_list = judge_of({**ENV, "ECAC_JUDGE_BASE_URL": "http://a:1/v1, http://b:2/v1"})
    assert env_list.endpoint.base_urls == ("http://a:1/v1", "http://b:2/v1")
    with pytest.raises(ClientConfigError, match="given twice"):
        judge_of(ENV, judge_base_url=["http://a:1/v1", "http://a:1/v1"])


def test_options_from_the_environment_for_tasks_and_trainers():
    env = {
        "ECAC_JUDGE_MODEL": "m",
        "ECAC_JUDGE_CONCURRENCY": "7",
        "ECAC_JUDGE_TIMEOUT": "12.5",
        "ECAC_JUDGE_MAX_RETRIES": "0",
        "ECAC_JUDGE_MAX_TOKENS": "64",
        "ECAC_JUDGE_RPM": "600",
        "ECAC_JUDGE_TPM": "90000",
        "ECAC_JUDGE_IMAGE_MAX_SIDE": "768",
        "ECAC_JUDGE_STRUCTURED_OUTPUT": "off",
    }
    config = judge_of(env)
    assert (config.concurrency, config.timeout, config.max_retries, config.max_tokens) == (7, 12.5, 0, 64)
    assert (config.rpm, config.tpm, config.image, config.structured_output) == (600, 90000, ImageRule(768), False)
    assert judge_of(env, concurrency="3").concurrency == 3  # a flag still wins
    defaults = judge_of({"ECAC_JUDGE_MODEL": "m"})
    assert defaults.image == ImageRule() and defaults.params == {"temperature": 0.0, "max_tokens": 2048}


def test_report_description_has_no_secret():
    config = judge_of(ENV, judge_api_key="sk-SECRET-1", rpm="60")
    described = LLMClient(config, progress=False).describe()
    assert "sk-SECRET-1" not in repr(config) + str(described) + repr(config.endpoint)
    assert described["rate_limits"] == {"rpm": 60.0, "tpm": None}
    assert described["image"] == {"rule": "pixel_budget", "max_pixels": 1605632, "min_pixels": 200704}
    assert described["structured_output"] == {"mode": "auto", "supported": {"http://ecac:1/v1": None}}
    assert described["params"] == {"temperature": 0.0, "max_tokens": 2048}


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"image_max_side": "0"}, {}, "--image-max-side: must be >= 1, got 0"),
        ({"temperature": "nan"}, {}, "--temperature: must be a finite number in 0-2, got nan"),
        ({"temperature": "inf"}, {}, "--temperature: must be a finite number in 0-2, got inf"),
        ({"parse_retries": "-1"}, {}, "--parse-retries: must be >= 0, got -1"),
        ({"concurrency": "0"}, {}, "--concurrency: must be >= 1, got 0"),
        ({"concurrency": "many"}, {}, "--concurrency: not an integer: 'many'"),
        ({"timeout": "-1"}, {}, "--timeout: must be a finite number > 0, got -1.0"),
        ({"max_retries": "-2"}, {}, "--max-retries: must be >= 0, got -2"),
        ({"max_tokens": "0"}, {}, "--max-tokens: must be >= 1, got 0"),
        ({"rpm": "0"}, {}, "--rpm: must be a finite number > 0, got 0.0"),
        ({"structured_output": "yes"}, {}, "--structured-output: must be 'auto' or 'off', got 'yes'"),
        ({}, {"ECAC_JUDGE_CONCURRENCY": "0"}, "ECAC_JUDGE_CONCURRENCY: must be >= 1, got 0"),
        ({}, {"ECAC_JUDGE_TPM": "nan"}, "ECAC_JUDGE_TPM: must be a finite number > 0, got nan"),
        ({"judge_api_key": "sk-abc\n"}, {}, "--judge-api-key: the API key contains whitespace"),
        ({}, {"ECAC_JUDGE_API_KEY": "sk-abc\n"}, "ECAC_JUDGE_API_KEY: the API key contains whitespace"),
        ({}, {"ECAC_JUDGE_API_KEY": "sk-a\x00b"}, "ECAC_JUDGE_API_KEY: the API key contains whitespace"),
        ({"judge_base_url": ["ftp://host/v1"]}, {}, "--judge-base-url: expected an http(s) URL with a host"),
        ({"judge_base_url": ["http://u:pw@host/v1"]}, {}, "--judge-base-url: credentials in the URL"),
        ({"judge_base_url": ["http://host:99999/v1"]}, {}, "--judge-base-url: not a valid URL"),
        ({}, {"ECAC_JUDGE_BASE_URL": "localhost:8000"}, "ECAC_JUDGE_BASE_URL: expected an http(s) URL"),
    ],
)
def test_bad_values_are_named(flags, env, message):
    with pytest.raises(ClientConfigError) as info:
        Settings.from_env({"ECAC_JUDGE_MODEL": "m", **env}, **flags).client_config()
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value) and "sk-abc" not in str(info.value) and "pw" not in str(info.value)


def test_python_configs_are_validated_the_same_way():
    endpoint = Endpoint(("http://h/v1",), "m")
    with pytest.raises(ClientConfigError, match="--concurrency: must be >= 1"):
        ClientConfig(endpoint, concurrency=0)
    with pytest.raises(ClientConfigError, match="--temperature"):
        ClientConfig(endpoint, temperature=float("nan"))
    with pytest.raises(ClientConfigError, match="--image-max-side"):
        ClientConfig(endpoint, image=ImageRule(max_side=0))
    with pytest.raises(ClientConfigError, match="the judge API key: the API key contains whitespace"):
        Endpoint(("http://h/v1",), "m", "sk-x\r\n")


@pytest.fixture(scope="module")
def server():
    with JudgeServer() as srv:
        yield srv


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--image-max-side", "0"], {}, "--image-max-side"),
        (["--temperature", "nan"], {}, "--temperature"),
        (["--parse-retries", "-1"], {}, "--parse-retries"),
        (["--concurrency", "0"], {}, "--concurrency"),
        ([], {"ECAC_JUDGE_API_KEY": "sk-trailing-newline\n"}, "ECAC_JUDGE_API_KEY"),
        ([], {"ECAC_JUDGE_TIMEOUT": "0"}, "ECAC_JUDGE_TIMEOUT"),
        (["--cache-dir", "FILE"], {}, "cache dir"),
    ],
)
def test_cli_exits_2_before_sending(server, tmp_path, monkeypatch, capsys, argv, env, named):
    server.state.reset()
    for name, value in {"ECAC_JUDGE_MODEL": "m", "ECAC_JUDGE_BASE_URL": server.base_url, **env}.items():
        monkeypatch.setenv(name, value)
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    argv = [str(a_file) if a == "FILE" else a for a in argv]
    if "--cache-dir" not in argv:
        argv += ["--cache-dir", str(tmp_path / "cache")]
    for command in (["judge"], ["toy-precision"], ["balanced"]):
        assert main([*command, *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {named}") or named in err.splitlines()[0], err
        assert len(err.strip().splitlines()) == 1 and "sk-trailing" not in err
    assert server.state.requests == 0


# -- hostile keys and URLs -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_key_is_accepted_only_if_it_can_be_sent_and_never_echoed(key):
    try:
        accepted = check_api_key(key, "--judge-api-key")
    except ClientConfigError as exc:
        assert len(key) < 3 or key not in str(exc)
        assert not key or any(not ("!" <= c <= "~") for c in key)
    else:
        assert accepted == key and all(c in string.printable and not c.isspace() for c in key)


_secret = st.text(alphabet=string.ascii_letters + string.digits, min_size=8, max_size=16).map(lambda s: "S3CR" + s)


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "ftp", "", "HTTP"]),
    secret=_secret,
    host=st.sampled_from(["h", "127.0.0.1", "[::1]", "ex.example", ""]),
    port=st.sampled_from(["", ":8000", ":0", ":99999", ":x"]),
    path=st.text(alphabet=string.ascii_letters + "/-_.%", max_size=12),
    userinfo=st.booleans(),
    query=st.booleans(),
)
def test_urls_with_secrets_never_echo_them(scheme, secret, host, port, path, userinfo, query):
    url = (
        f"{scheme}://{'user:' + secret + '@' if userinfo else ''}{host}{port}/{path}{'?key=' + secret if query else ''}"
    )
    assert secret not in public_url(url)
    try:
        check_base_url(url, "--judge-base-url")
    except ClientConfigError as exc:
        assert secret not in str(exc) and str(exc).startswith("--judge-base-url: ")
    else:
        assert not userinfo and scheme in ("http", "https", "HTTP") and host


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_as_url_is_accepted_or_a_named_error(text):
    try:
        check_base_url(text, "ECAC_JUDGE_BASE_URL")
    except ClientConfigError as exc:
        assert str(exc).startswith("ECAC_JUDGE_BASE_URL: ") and "\n" not in str(exc)


def test_settings_pickle_without_their_open_cache(tmp_path):
    """The trainer's reward functions hold settings and must stay picklable once the cache has been opened."""
    import pickle

    env = {"ECAC_JUDGE_BASE_URL": "http://127.0.0.1:9/v1", "ECAC_JUDGE_MODEL": "m", "ECAC_JUDGE_API_KEY": "sk-x"}
    settings = Settings.from_env(env, cache_dir=str(tmp_path))
    assert settings.cache is not None  # opened: a sqlite3 connection now hangs off the settings
    copy = pickle.loads(pickle.dumps(settings))
    assert (copy.judge_model, copy.judge_key) == ("m", "sk-x")
    assert copy.cache is not None and copy.cache is not settings.cache
