use super::*;

fn c(raw: &str) -> Category {
    classify(&Reply::parse(raw).expect("reply"), Provider::Other).category
}

fn act(raw: &str) -> Action {
    classify(&Reply::parse(raw).expect("reply"), Provider::Other).action
}

/// Every clue of the deliverability guidance, case by case, with the real reply texts.
#[test]
fn seed_004_clues() {
    assert_eq!(c("421 4.7.0 Rate limit exceeded. Try again later."), Category::RateLimited);
    assert_eq!(c("421 4.7.23 Sending IP has no PTR record or mismatched reverse DNS."), Category::AuthOrTransport);
    assert_eq!(c("451 4.7.24 SPF record has suspicious entries."), Category::AuthOrTransport);
    assert_eq!(
        c("421 4.7.26 This email has been rate limited because it is unauthenticated."),
        Category::AuthOrTransport
    );
    assert_eq!(c("421 4.7.27 SPF authentication did not pass."), Category::AuthOrTransport);
    assert_eq!(c("421 4.7.28 Gmail has detected an unusual rate of email."), Category::UnusualRate);
    assert_eq!(c("421 4.7.29 TLS is missing for a bulk sender."), Category::AuthOrTransport);
    assert_eq!(c("421 4.7.30 DKIM authentication did not pass."), Category::AuthOrTransport);
    assert_eq!(c("421 4.7.32 From header does not match authenticated SPF or DKIM domain."), Category::AuthOrTransport);
    assert_eq!(c("421 4.7.40 Sending domain does not have a DMARC record or policy."), Category::AuthOrTransport);
    assert_eq!(c("450 4.2.1 The user is receiving email too quickly."), Category::RecipientRateLimited);
    assert_eq!(c("452 4.5.3 Too many recipients in one transaction."), Category::TooManyRecipients);
    assert_eq!(c("451 4.4.2 Delivery time expired after 48 hours."), Category::Expired);
    assert_eq!(c("421 4.7.0 [TS04] Messages temporarily deferred."), Category::YahooDeferral);
    assert_eq!(c("550 5.1.1 The email account does not exist."), Category::InvalidRecipient);
    // The actions the seed prescribes.
    assert_eq!(act("421 4.7.0 Rate limit exceeded. Try again later."), Action::SlowLane);
    assert_eq!(act("421 4.7.28 Gmail has detected an unusual rate of email."), Action::PauseLane { minutes: 10 });
    assert_eq!(act("421 4.7.27 SPF authentication did not pass."), Action::ConfigIncident);
    assert_eq!(act("450 4.2.1 The user is receiving email too quickly."), Action::RetryRecipient);
    assert_eq!(act("452 4.5.3 Too many recipients in one transaction."), Action::SplitTransaction);
    assert_eq!(
        act("550 5.1.1 The email account does not exist."),
        Action::Bounce { bounce_type: BounceType::Permanent, subtype: "NoEmail", suppress: true }
    );
}

#[test]
fn real_provider_texts() {
    assert_eq!(
        c(
            "550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's email address for typos or\n550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser"
        ),
        Category::InvalidRecipient
    );
    assert_eq!(
        c("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints"),
        Category::YahooDeferral
    );
    assert_eq!(c("421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred"), Category::YahooDeferral);
    assert_eq!(
        c("550 5.7.1 [IRR] Our system has detected that this message is likely unsolicited mail."),
        Category::Reputation
    );
    assert_eq!(
        c("550 5.7.26 This mail has been blocked because the sender is unauthenticated."),
        Category::AuthOrTransport
    );
    assert_eq!(c("452 4.2.2 The email account that you tried to reach is over quota."), Category::MailboxFull);
    assert_eq!(c("552 5.2.2 The email account that you tried to reach is over quota."), Category::MailboxFull);
    assert_eq!(c("550 5.5.0 Requested action not taken: mailbox unavailable"), Category::InvalidRecipient);
    assert_eq!(
        c("550 5.2.122 The recipient has exceeded their limit for the number of messages they can receive per hour."),
        Category::RecipientRateLimited
    );
    assert_eq!(
        c("451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation."),
        Category::RateLimited
    );
    assert_eq!(c("421 4.7.0 Try again later, closing connection. (EHLO)"), Category::RateLimited);
    assert_eq!(c("550 5.7.1 Message rejected: repeated Message-ID."), Category::DuplicateMessageId);
    assert_eq!(
        c("554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"),
        Category::Reputation
    );
    assert_eq!(c("451 4.3.0 Temporary local problem"), Category::TemporaryOther);
    assert_eq!(c("554 5.6.0 Message rejected: malformed"), Category::PermanentOther);
    assert_eq!(c("250 2.0.0 OK 1700000000 abc.123 - gsmtp"), Category::Accepted);
    assert_eq!(c("421 Service not available, closing transmission channel"), Category::RateLimited);
    assert_eq!(c("421 4.7.0 Too many concurrent connections"), Category::TooManyConnections);
    assert_eq!(c("421 4.7.0 Too many connections from your IP"), Category::TooManyConnections);
    assert_eq!(act("421 4.7.0 Too many concurrent connections"), Action::FewerConnections);
    // Microsoft's per-recipient limit is recipient-scoped, not lane-scoped.
    assert_eq!(act("550 5.2.122 The recipient has exceeded their limit"), Action::RetryRecipient);
}

#[test]
fn http_answers() {
    assert_eq!(classify_http(429).action, Action::WaitRetryAfter);
    assert_eq!(classify_http(200).category, Category::Accepted);
    assert_eq!(classify_http(503).action, Action::RetryRecipient);
}

#[test]
fn a_stated_delay_is_read_only_after_words_of_waiting() {
    assert_eq!(stated_delay("Greylisted, please try again in 300 seconds"), Some(300));
    assert_eq!(stated_delay("greylisted for 5 minutes"), Some(300));
    assert_eq!(stated_delay("Greylisted, retry after 60s"), Some(60));
    assert_eq!(stated_delay("Greylisted, see http://x/5 minutes"), None);
    assert_eq!(stated_delay("Greylisted 4.2.0"), None);
    assert_eq!(stated_delay("try again in 99999999 minutes"), Some(86_400));
}

#[test]
fn each_decision_names_its_scope() {
    let scope = |raw: &str| classify(&Reply::parse(raw).expect("reply"), Provider::Other).scope;
    assert_eq!(scope("421 4.7.0 Too many concurrent connections"), Scope::Connection);
    assert_eq!(scope("421 4.7.28 Gmail has detected an unusual rate of email."), Scope::SendingIp);
    assert_eq!(scope("450 4.2.1 The user is receiving email too quickly."), Scope::Mailbox);
    assert_eq!(scope("550 5.7.1 Message rejected: repeated Message-ID."), Scope::Message);
    assert_eq!(
        scope("550 5.7.515 Access denied, sending domain [d] does not meet the required authentication level"),
        Scope::DomainAuth
    );
    assert_eq!(scope("451 4.4.1 no answer"), Scope::Network);
}
