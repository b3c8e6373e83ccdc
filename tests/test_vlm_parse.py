"""Parsing of model replies as real VLMs produce them: every reply ends in a schema-valid result with its repairs
recorded, or a VLMParseError whose reason says why."""
import json

import pytest

from comix.vlm import VLMParseError, check_result, parse_reply
from comix.testing.vlm import SAMPLE_RESULT

GOOD = json.dumps(SAMPLE_RESULT, ensure_ascii=False)
JA = {'panels': [{'box_2d': [0, 500, 480, 1000], 'dialogue': [{'speaker': 'ルフィ', 'text': '海賊王に俺はなる!!'}],
                  'narration': [], 'sfx': ['ドン'], 'characters': ['ルフィ'], 'description': '宣言する'}],
      'summary': 'ルフィが宣言する。', 'page_type': 'Story'}


@pytest.mark.parametrize('reply,finish,repairs', [
    (GOOD, 'stop', []),
    (f'```json\n{GOOD}\n```', 'stop', ['fenced']),
    (f'```\n{GOOD}', 'stop', ['fenced']),                                   # unclosed fence
    (f'Sure, here is the JSON for the page:\n\n{GOOD}\n\nAnything else?', 'stop', ['text_before', 'text_after']),
    (f'<think>two panels, {{maybe}} three</think>\n{GOOD}', 'stop', ['thinking_removed']),
    (GOOD.replace('"sfx": []', '"sfx": [],').replace('}], "summary"', '},], "summary"'), 'stop', ['repaired']),
])
def test_recoverable_replies_give_the_same_result(reply, finish, repairs):
    res, got = parse_reply(reply, finish)
    assert res == SAMPLE_RESULT and got == repairs


def test_unicode_and_page_type_case():
    res, repairs = parse_reply(json.dumps(JA, ensure_ascii=False))
    assert res['panels'][0]['dialogue'][0]['text'] == '海賊王に俺はなる!!' and res['page_type'] == 'story' and repairs == []


def test_truncated_mid_string_is_repaired_and_marked():
    cut = GOOD[:GOOD.index('Something splashes') + 5]  # inside the last description
    res, repairs = parse_reply(cut, 'length')
    assert 'truncated' in repairs and check_result(res) == [] and len(res['panels']) == 2
    assert res['panels'][1]['description'] == 'Somet'


@pytest.mark.parametrize('reply,finish,reason,says', [
    ('', 'stop', 'empty', 'no content'),
    (None, 'stop', 'empty', 'no content'),
    ('I am sorry, I cannot help with that.', 'stop', 'no_json', 'no JSON'),
    ('{{{ not json', 'stop', 'invalid_json', 'not repairable'),
    ('{"panels": [{"box_2d": [12, 4', 'length', 'truncated', 'box_2d'),
    ('{"panels": [{"box_2d": [10, 10, 900]}], "summary": "", "page_type": "story"}', 'stop', 'schema_invalid', 'panels/0/box_2d'),
    ('{"panels": [{"box_2d": [0, 0, 2000, 1000]}], "summary": "", "page_type": "story"}', 'stop', 'schema_invalid', '2000'),
    ('{"summary": "a page"}', 'stop', 'schema_invalid', "'panels' is a required property"),
])
def test_unrecoverable_replies_say_why(reply, finish, reason, says):
    with pytest.raises(VLMParseError) as e: parse_reply(reply, finish)
    assert e.value.reason == reason and says in e.value.detail


def test_swapped_box_corners_are_fixed_and_recorded():
    r = {'panels': [{'box_2d': [500, 900, 0, 100]}], 'summary': 's', 'page_type': 'story'}
    res, repairs = parse_reply(json.dumps(r))
    assert res['panels'][0]['box_2d'] == [0, 100, 500, 900] and 'box_swapped' in repairs
