"""Issue 14 §3: `edgeflow settings` prints each setting's effective value and where it came from, secrets
masked, as a table or JSON; docs/settings.md's table is the code's own list."""

from __future__ import annotations

import json
import pathlib
import re

from click.testing import CliRunner

from edgeflow.cli import cli
from edgeflow.config import SETTINGS, reference_table

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "settings.md"
TABLE = re.compile(r"<!-- settings-table:start[^>]*-->\n(.*?)<!-- settings-table:end -->", re.S)


def run(*args: str, **env: str):
    result = CliRunner().invoke(cli, ["settings", *args], env=env)
    print(result.output)
    return result


def test_the_table_says_where_each_value_came_from_with_secrets_masked(clean):
    (clean / "edgeflow.yaml").write_text("redis_host: redis.site\ngateway_token: hush-hush\n")
    result = run(GATEWAY_HTTP_PORT="9100", REDIS_PASSWORD="pa55word")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "settings file: edgeflow.yaml"
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in lines[2:]}
    assert list(rows) == [s.name for s in SETTINGS]
    assert rows["GATEWAY_HTTP_PORT"] == ["9100", "env"]
    assert rows["REDIS_HOST"] == ["redis.site", "edgeflow.yaml:1"]
    assert rows["EDGEFLOW_GATEWAY_TOKEN"] == ["***", "edgeflow.yaml:2"]
    assert rows["REDIS_PASSWORD"] == ["***", "env"]
    assert rows["GATEWAY_TCP_PORT"] == ["8080", "default"]
    assert rows["DATA_REDIS_HOST"] == ["redis.site", "default (= REDIS_HOST)"]
    assert "hush" not in result.output and "pa55" not in result.output


def test_json_and_a_choice_of_settings(clean):
    (clean / "edgeflow.yaml").write_text("allowed_origins: [http://a]\n")
    result = run("--format", "json", "allowed_origins", "REDIS_URL", "gateway_tcp_port",
                 REDIS_URL="redis://:s3cret@h:1/0")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["file"] == "edgeflow.yaml"
    assert data["settings"] == [
        {"name": "EDGEFLOW_ALLOWED_ORIGINS", "key": "allowed_origins", "value": ["http://a"],
         "source": "file", "where": "edgeflow.yaml:1"},
        {"name": "REDIS_URL", "key": "redis_url", "value": "redis://:***@h:1/0", "source": "env",
         "where": "$REDIS_URL"},
        {"name": "GATEWAY_TCP_PORT", "key": "gateway_tcp_port", "value": 8080, "source": "default",
         "where": "default"}]


def test_no_file_and_errors_exit_2_on_one_line(clean):
    result = run()
    assert result.exit_code == 0
    first = result.output.splitlines()[0]
    assert first == "settings file: none (no edgeflow.yaml here, $EDGEFLOW_CONFIG unset)"
    result = run("REDIS_HOTS")
    assert result.exit_code == 2
    assert result.output == "ConfigError: unknown setting 'REDIS_HOTS' (did you mean 'REDIS_HOST'?)\n"
    (clean / "edgeflow.yaml").write_text("redis_hots: x\n")
    result = run()
    assert result.exit_code == 2
    assert result.output == ("ConfigError: edgeflow.yaml:1:1: unknown setting 'redis_hots' "
                             "(did you mean 'redis_host'?)\n")


def test_the_command_is_listed_in_edgeflow_help(clean):
    result = CliRunner().invoke(cli, ["--help"])
    assert re.search(r"^\s+settings\s+Show each setting", result.output, re.M)


def test_docs_settings_md_has_the_code_s_table(clean):
    """Regenerate with: edgeflow settings --reference (between the markers of docs/settings.md)."""
    found = TABLE.search(DOCS.read_text(encoding="utf-8"))
    assert found, "docs/settings.md has no settings-table markers"
    assert found.group(1) == reference_table()
    assert run("--reference").output == reference_table()
    rows = [line for line in found.group(1).splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [s.name for s in SETTINGS]
