"""Secrets from files (a container platform's mounted secrets), not only the environment."""

import subprocess
import sys


def test_a_secret_is_read_from_a_file_in_the_secrets_dir(tmp_path) -> None:
    (tmp_path / "fleetmail_gateway_admin_api_key").write_text("key-from-a-file\n")
    (tmp_path / "fleetmail_nats_password").write_text("nats-password-from-a-file")
    probe = (
        "from job_gateway.settings import GatewaySettings;"
        "s = GatewaySettings();"
        "print(s.admin_api_key.get_secret_value(), s.common.nats_password.get_secret_value())"
    )
    env = {"FLEETMAIL_SECRETS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["key-from-a-file", "nats-password-from-a-file"]
