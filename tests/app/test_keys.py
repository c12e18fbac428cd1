"""API keys: read from the variables and files, compared against every key, never shown."""

import pytest

from app.keys import ApiKeys
from app.settings import SettingsError, load_settings


def keys_of(**settings) -> ApiKeys:
    return ApiKeys.from_settings(load_settings(**settings))


def test_no_keys_leaves_the_client_endpoints_open_and_reload_disabled():
    keys = keys_of()
    assert keys.allows_client(None) and keys.allows_client("anything")
    assert not keys.is_admin(None) and not keys.is_admin("anything")


def test_comma_separated_keys_with_spaces_around():
    keys = keys_of(api_keys=" alpha ,beta,, ", admin_api_keys="root-1")
    assert keys.client == (b"alpha", b"beta")
    assert keys.allows_client("alpha") and keys.allows_client("beta")
    assert (
        not keys.allows_client("alph") and not keys.allows_client("alphaa") and not keys.allows_client(None)
    )
    assert keys.allows_client("root-1")  # an admin key is accepted where a client key is
    assert keys.is_admin("root-1") and not keys.is_admin("alpha")


def test_a_key_file_adds_one_key_per_line_and_skips_comments(tmp_path):
    file = tmp_path / "keys"
    file.write_text("# camera line 1\ncam-1\n\n  cam-2  \n")
    keys = keys_of(api_keys="alpha", api_keys_file=file)
    assert keys.client == (b"alpha", b"cam-1", b"cam-2")


def test_an_empty_key_file_stops_the_start(tmp_path):
    file = tmp_path / "keys"
    file.write_text("# nothing yet\n")
    with pytest.raises(SettingsError, match=r"INSPECT_ADMIN_API_KEYS_FILE=.*holds no key"):
        keys_of(admin_api_keys_file=file)


def test_a_missing_key_file_names_its_variable(tmp_path):
    with pytest.raises(SettingsError, match="INSPECT_API_KEYS_FILE: no such file"):
        load_settings(api_keys_file=tmp_path / "absent")


def test_a_bad_key_in_a_file_is_named_by_position_not_quoted(tmp_path):
    file = tmp_path / "keys"
    file.write_text("good-key\nbad key-s3cret\n")
    with pytest.raises(SettingsError) as caught:
        keys_of(api_keys_file=file)
    assert "key 2" in str(caught.value) and "s3cret" not in str(caught.value)


def test_the_repr_counts_keys_and_hides_them():
    keys = keys_of(api_keys="s3cret-a,s3cret-b")
    assert repr(keys) == "ApiKeys(client=2 keys, admin=0 keys)"
    assert "s3cret" not in repr(keys)
