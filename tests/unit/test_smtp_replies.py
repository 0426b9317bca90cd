from fleetmail_runtime import smtp_replies
from fleetmail_runtime.smtp_replies import ReplyClass, classify


def test_known_replies_are_classified_with_their_remedy() -> None:
    klass, known = classify(535, smtp_replies.SMTP_AUTH_DISABLED.text)
    assert klass is ReplyClass.PERMANENT and known is smtp_replies.SMTP_AUTH_DISABLED
    assert known.remedy is not None and "Authenticated SMTP" in known.remedy
    klass, known = classify(550, smtp_replies.BASIC_AUTH_REFUSED.text)
    assert klass is ReplyClass.PERMANENT and known is smtp_replies.BASIC_AUTH_REFUSED


def test_token_rejections_and_code_families() -> None:
    assert classify(535, "5.7.3 Authentication unsuccessful [X]")[0] is ReplyClass.TOKEN_REJECTED
    assert classify(501, smtp_replies.HVE_TOKEN_EXPIRING.text)[0] is ReplyClass.TOKEN_REJECTED
    assert classify(451, "4.3.2 try later")[0] is ReplyClass.TRANSIENT
    assert classify(421, "4.7.0 closing")[0] is ReplyClass.TRANSIENT
    assert classify(554, "5.6.0 rejected")[0] is ReplyClass.PERMANENT


def test_gmail_challenge_is_parsed_and_a_bad_token_is_a_token_rejection() -> None:
    import base64

    encoded = base64.b64encode(smtp_replies.GMAIL_XOAUTH2_CHALLENGE.encode()).decode()
    challenge = smtp_replies.parse_xoauth2_challenge(encoded)
    assert challenge is not None and challenge.token_rejected
    assert challenge.scope == "https://mail.google.com/" and challenge.schemes == "Bearer"
    forbidden = base64.b64encode(b'{"status":"403","schemes":"Bearer","scope":"x"}').decode()
    assert smtp_replies.parse_xoauth2_challenge(forbidden).token_rejected is False  # type: ignore[union-attr]
    assert smtp_replies.parse_xoauth2_challenge("not base64 at all!") is None
    assert smtp_replies.parse_xoauth2_challenge(base64.b64encode(b"[1]").decode()) is None
