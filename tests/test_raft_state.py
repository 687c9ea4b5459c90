"""Raft's durable term and vote, and the voting configuration, as a node is configured.

The file store is checked on a real file system (atomic replace, refusal of a
corrupt or foreign file with a message naming it); the wiring is checked by
building the node's cluster actor from settings, as ``jobtrio serve`` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobtrio.cluster.messages import RaftVote, RaftVoteResponse, Send
from jobtrio.cluster.raft_state import FileRaftState, HardState, RaftStateError
from jobtrio.config import ENVIRONMENT_VARIABLES, ConfigError, Settings
from jobtrio.server import build_cluster

JOBTRIO = Path(sys.executable).parent / "jobtrio"
PEERS = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005"


def test_a_saved_state_is_read_back(tmp_path: Path) -> None:
    store = FileRaftState(tmp_path / "deep" / "raft-n1.json", "n1")
    assert store.load() == HardState(0, None)  # no file yet: a new node
    store.save(HardState(7, "n3"))
    assert FileRaftState(tmp_path / "deep" / "raft-n1.json", "n1").load() == HardState(7, "n3")
    store.save(HardState(8, None))
    assert store.load() == HardState(8, None)
    # Replaced whole, never left half-written beside a temporary file.
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["raft-n1.json"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not JSON"),
        ('{"format": 1, "node_id": "n1", "term": -1, "voted_for": null}', "term must be"),
        ('{"format": 1, "node_id": "n1", "term": "3", "voted_for": null}', "term must be"),
        ('{"format": 1, "node_id": "n1", "term": 3, "voted_for": 5}', "voted_for must be"),
        ('{"format": 2, "node_id": "n1", "term": 3, "voted_for": null}', "format 1"),
        ('{"format": 1, "node_id": "n2", "term": 3, "voted_for": null}', "belongs to node 'n2'"),
        ("[]", "format 1"),
    ],
)
def test_a_bad_state_file_is_refused_naming_it(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "raft-n1.json"
    path.write_text(content)
    with pytest.raises(RaftStateError, match=why) as info:
        FileRaftState(path, "n1").load()
    assert str(path) in str(info.value)


def raft_settings(tmp_path: Path, **env: str) -> Settings:
    base = {
        "NODE_ID": "n1",
        "ELECTION_ALGORITHM": "raft",
        "CLUSTER_PORT": "7001",
        "CLUSTER_HOST": "127.0.0.1",
        "CLUSTER_PEERS": PEERS,
        "DATA_DIR": str(tmp_path),
    }
    return Settings.from_env({**base, **env}, dotenv_path=None)


def test_the_voting_configuration_is_cluster_peers_and_this_node(tmp_path: Path) -> None:
    settings = raft_settings(tmp_path, CLUSTER_PEERS="127.0.0.1:7002,127.0.0.1:7003")
    assert settings.voters == {"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}
    assert settings.raft_state_path == os.path.join(str(tmp_path), "raft-n1.json")


def test_cluster_size_must_match_the_configured_voters(tmp_path: Path) -> None:
    assert raft_settings(tmp_path, CLUSTER_SIZE="5").cluster_size == 5
    with pytest.raises(ConfigError, match=r"CLUSTER_SIZE=4 is not valid: .* names 5 voters"):
        raft_settings(tmp_path, CLUSTER_SIZE="4")
    # Bully and gossip have no voters: no check.
    assert raft_settings(tmp_path, CLUSTER_SIZE="4", ELECTION_ALGORITHM="bully").cluster_size == 4


def test_the_node_s_election_takes_its_quorum_from_cluster_peers(tmp_path: Path) -> None:
    """Before its membership layer has seen anyone, and whatever it sees later, a
    node configured with five voters needs three votes. (The election used to
    start from no voters at all and grow with the membership view.)"""
    built = build_cluster(raft_settings(tmp_path))
    assert built is not None
    election = built[0].election
    assert election.quorum == 3  # type: ignore[attr-defined]
    election.membership_changed(frozenset({"n1", "n2"}), 0.0, frozenset({"n3", "n4"}))
    assert election.quorum == 3  # type: ignore[attr-defined]


def test_a_restarted_node_reads_its_vote_from_the_data_dir(tmp_path: Path) -> None:
    settings = raft_settings(tmp_path)
    built = build_cluster(settings)
    assert built is not None
    election = built[0].election
    election.tick(0.0)
    # n9 is not a configured voter (no address of CLUSTER_PEERS is known for it):
    # no vote, and nothing changes on disk.
    out = election.step("n9", RaftVote(term=3, pre_vote=False), 0.1)
    assert out == [Send("n9", RaftVoteResponse(0, granted=False, pre_vote=False))]
    assert not Path(settings.raft_state_path).exists()

    store = FileRaftState(settings.raft_state_path, "n1")
    store.save(HardState(5, "n2"))
    again = build_cluster(settings)
    assert again is not None
    assert (again[0].election.term, again[0].election.voted_for) == (5, "n2")  # type: ignore[attr-defined]


def test_serve_refuses_a_corrupt_state_file_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "raft-n1.json").write_text("{garbage")
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    env.update(
        NODE_ID="n1",
        ELECTION_ALGORITHM="raft",
        CLUSTER_PORT="7001",
        CLUSTER_PEERS=PEERS,
        DATA_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [str(JOBTRIO), "serve", "--env-file", ""],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "raft-n1.json is not valid: not JSON" in line and "Traceback" not in line
