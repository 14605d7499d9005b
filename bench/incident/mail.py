"""The replay's mail: the giveaway wave and the steady ham, deterministic from a seed.

Wave: near-identical "Mini Cooper" giveaway spams, as in the outage: a per-message name, reference
number, fee, deadline, claim link and subject, 7bit, quoted-printable or base64, plain or
multipart/alternative with HTML; many envelope senders and many client networks (one /24 of
10.0.0.0/8 per sending host; 400 hosts). Its phrasing is not that of the shipped
Breakwater.Spam.MiniCooperGiveaway signature (the next wave is never the last one's text): only wave
detection or a signature ops add knows it. The text every message shares (OPS_TEXT) is what ops put
in the signature they add.

Ham: bench/corpus/generate.py's ham (plain, HTML, multipart, attachments, and near misses that talk
about a Mini Cooper without the giveaway), from 40 networks of regular senders.

Each message carries X-Incident-Id: w-N (wave) or h-N (ham); the handler files the ticket under it.
"""
import base64
import os
import quopri
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "corpus"))
import generate as corpus  # noqa: E402  (bench/corpus/generate.py)

RCPT = "info@ticket.test"
# The phrase ops grep for and add as a signature (`breakwater signatures add --text`): in every wave
# message, in no ham.
OPS_TEXT = "is reserved in your name"

FIRST = ["Anna", "Ben", "Carla", "David", "Elena", "Frank", "Grace", "Hiro", "Ines", "Jonas", "Karin", "Luis",
         "Maria", "Nils", "Olga", "Peter", "Rosa", "Sven", "Tara", "Vera", "Wei", "Zoe", "Jurgen", "Amir"]
LAST = ["Smith", "Jones", "Garcia", "Mueller", "Rossi", "Dubois", "Novak", "Tanaka", "Chen", "Silva", "Berg"]
SENDER_DOMAINS = ["prize-center.test", "lucky-draw.test", "mini-rewards.test", "winners-club.test",
                  "promo-mail.test", "car-giveaway.test", "notify-prizes.test", "fortune-desk.test"]
PITCH = [
    "Our partners sponsor this draw to thank loyal customers. Each week one entry is drawn among the "
    "addresses that took part in our customer survey.",
    "Delivery is free within the country. The car comes with a full tank, winter tyres and a two year "
    "warranty from the dealer nearest to you.",
    "If you do not confirm in time, the car goes to the next entry on the list. This notice was sent "
    "to you automatically; please do not reply to it.",
]


class Mail:
    def __init__(self, seed=1):
        self.r = random.Random(seed)
        self.ham_gen = corpus.Gen(seed + 1000)
        self.wave_hosts = [f"10.{self.r.randint(0, 255)}.{self.r.randint(0, 255)}.{self.r.randint(2, 254)}"
                           for _ in range(400)]
        self.ham_hosts = [f"172.{16 + i % 16}.{self.r.randint(0, 255)}.{self.r.randint(2, 254)}" for i in range(40)]

    def wave(self, n):
        """(client address, envelope sender, message bytes) of wave message n."""
        r = self.r
        first, last = r.choice(FIRST), r.choice(LAST)
        code = f"{r.getrandbits(32):08X}"
        domain = r.choice(SENDER_DOMAINS)
        link = f"http://claim-{code.lower()}.{domain}/r/{r.getrandbits(40):x}"
        body = (f"Hello {first},\n\nGood news: your address was drawn in our "
                f"{r.choice(('spring', 'summer', 'autumn', 'winter', 'anniversary'))} prize draw and a "
                f"brand new MINI Cooper {r.choice(('S', 'SE', 'Countryman', 'Clubman'))} {OPS_TEXT}.\n"
                f"Reference {code}. Confirm the delivery within {r.randint(2, 9)} days at\n{link}\n\n"
                f"A one-time delivery charge of {r.randint(9, 49)}.{r.randint(0, 99):02d} EUR applies.\n\n"
                + "\n\n".join(corpus.wrap(p) for p in PITCH) + "\n")
        subject = r.choice(("Your MINI Cooper is waiting", "Prize draw result", f"{first}, confirm your delivery",
                            "Reference " + code, "Last reminder: your new car"))
        sender = f"{r.choice(('winner', 'draw', 'rewards', 'notify', 'info'))}{r.randint(1, 9999)}@{domain}"
        enc = r.choice(("7bit", "quoted-printable", "base64"))
        headers = [f"From: Prize Draw <{sender}>", f"To: <{RCPT}>", f"Subject: {subject}",
                   f"Date: Mon, 07 Dec 2026 0{n % 10}:{n % 60:02d}:00 +0000",
                   f"Message-ID: <{r.getrandbits(64):016x}@{domain}>", f"X-Incident-Id: w-{n}", "MIME-Version: 1.0"]
        if r.random() < 0.3:
            b = f"=_draw_{r.getrandbits(48):012x}"
            html = "<html><body><p>" + body.replace("\n\n", "</p><p>") + "</p></body></html>\n"
            parts = [("text/plain; charset=us-ascii", body), ("text/html; charset=us-ascii", html)]
            text = "\n".join(headers) + f'\nContent-Type: multipart/alternative; boundary="{b}"\n\n'
            for ctype, content in parts:
                text += f"--{b}\nContent-Type: {ctype}\nContent-Transfer-Encoding: {enc}\n\n{encode(content, enc)}\n"
            text += f"--{b}--\n"
        else:
            text = ("\n".join(headers) + f"\nContent-Type: text/plain; charset=us-ascii\n"
                    f"Content-Transfer-Encoding: {enc}\n\n{encode(body, enc)}")
        return r.choice(self.wave_hosts), sender, text.replace("\r\n", "\n").replace("\n", "\r\n").encode()

    def ham(self, n):
        """(client address, envelope sender, message bytes) of ham message n."""
        _kind, data = self.ham_gen.ham(f"h-{n}", n)
        data = data.replace(b"X-Bench-Id: ", b"X-Incident-Id: ", 1)
        host = self.ham_hosts[n % len(self.ham_hosts)]
        return host, f"customer{n}@example{n % 40}.test", data


def encode(text, enc):
    if enc == "base64":
        return base64.encodebytes(text.encode()).decode()
    if enc == "quoted-printable":
        return quopri.encodestring(text.encode()).decode()
    return text
