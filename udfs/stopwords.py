"""Stopword lists for term extraction, as frozensets of NFKC-casefolded words.

English is always applied (headlines mix languages, and it is the fallback for an
unknown language); German, French and Spanish are added for language "de", "fr"
and "es".  Deliberately *not* stopwords although common lists have them: "us"
(in headlines it is mostly the U.S.), "may" (Theresa May, the month), "new"
("new york"), "one" ("formula one").  The lists follow the usual NLTK/Snowball sets, written out here so the
job needs no download.  Words are normalized exactly like tokens (NFKC, casefold,
typographic apostrophes -> "'") at import, so "daß" matches the token "dass".
"""

from __future__ import annotations

import unicodedata

_ENGLISH = """
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each either etc even ever every few for from further get gets got had hadn't has hasn't have
haven't having he he'd he'll he's her here here's hers herself him himself his how how's however i i'd
i'll i'm i've if in into is isn't it it's its itself just let's me might more most much must
mustn't my myself neither no nor not now of off on once only or other ought our ours ourselves out
over own per same shall shan't she she'd she'll she's should shouldn't since so some still such than that
that's the their theirs them themselves then there there's these they they'd they'll they're they've
this those though through to too under until up upon very via was wasn't we we'd we'll we're we've
were weren't what what's when when's where where's whether which while who who's whom whose why why's
will with within without won't would wouldn't yet you you'd you'll you're you've your yours yourself
yourselves says said say vs
"""

_GERMAN = """
aber alle allem allen aller alles als also am an ander andere anderem anderen anderer anderes anderm
andern anders auch auf aus bei beim bin bis bist da damit dann das dass daß dasselbe dazu dein deine
deinem deinen deiner deines dem demselben den denn denselben der derer derselbe derselben des desselben
dessen dich die dies diese dieselbe dieselben diesem diesen dieser dieses dir doch dort du durch ein eine
einem einen einer eines einig einige einigem einigen einiger einiges einmal er es etwas euch euer eure
eurem euren eurer eures für gegen gewesen hab habe haben hat hatte hatten hier hin hinter ich ihm ihn
ihnen ihr ihre ihrem ihren ihrer ihres im in indem ins ist jede jedem jeden jeder jedes jene jenem jenen
jener jenes jetzt kann kein keine keinem keinen keiner keines können könnte machen man manche manchem
manchen mancher manches mein meine meinem meinen meiner meines mich mir mit muss musste nach nicht nichts
noch nun nur ob oder ohne schon sehr sein seine seinem seinen seiner seines selbst sich sie sind so
solche solchem solchen solcher solches soll sollte sondern sonst um und uns unser unsere unserem unseren
unserer unseres unter viel vom von vor wann war waren warst was weg weil weiter welche welchem welchen
welcher welches wenn werde werden wie wieder will wir wird wirst wo wollen wollte würde würden zu zum zur
zwar zwischen über
"""

_FRENCH = """
a ai aie aient aies ait alors as au aucun aucune aupres auquel aura aurai auraient aurais aurait auras
aurez auriez aurions aurons auront aussi autre autres aux avaient avais avait avant avec avez aviez avions
avoir avons ayant ayez ayons c ce ceci cela celle celles celui cependant certain certaine certaines
certains ces cet cette ceux chaque chez ci comme comment d dans de des deux devrait doit donc dont du elle
elles en encore entre es est et etaient etais etait etant ete etes etre eu eue eues eurent eus eusse
eussent eusses eussiez eussions eut eux été étaient étais était étant étiez étions êtes être fait faire
fut furent fus fusse fussent fut hors ici il ils j je jusqu jusque l la le les leur leurs lors lui m ma
mais me meme mes moi moins mon même n ne ni non nos notre nous nouveau nouvelle on ont ou où par parce pas
peu peut plus pour pourquoi qu quand que quel quelle quelles quels qui quoi s sa sans se selon sera serai
seraient serais serait seras serez seriez serions serons seront ses si sien soi soient sois soit sommes
son sont sous suis sur t ta te tes toi ton tous tout toute toutes tres très tu un une unes uns vers voici
voila voilà vos votre vous y à ça
"""

_SPANISH = """
a al algo algunas algunos ante antes como con contra cual cuales cuando de del desde donde durante e el
ella ellas ellos en entre era erais eran eras eres es esa esas ese eso esos esta estaba estabais estaban
estabas estad estada estadas estado estados estamos estando estar estaremos estará estarán estarás estaré
estaréis estaría estaríais estaríamos estarían estarías estas este estemos esto estos estoy estuve
estuviera estuvieron estuvimos estuvo está estábamos estáis están estás esté estéis estén estés fue fuera
fueron fuimos fui ha habéis haber había habían han has hasta hay haya he hemos hubo la las le les lo los
mas me mi mis mucho muchos muy más mí mía mías mío míos nada ni no nos nosotras nosotros nuestra nuestras
nuestro nuestros nueva nuevo o os otra otras otro otros para pero poco por porque que quien quienes qué
se sea sean ser será serán sido siendo sin sobre sois somos son soy su sus suya suyas suyo suyos también
tanto te tendrá tenemos tener tengo ti tiene tienen toda todas todo todos tu tus tú un una uno unos vosotras
vosotros vuestra vuestras vuestro vuestros y ya yo él
"""

# Typographic apostrophes fold to ASCII so "don’t" and "don't" are one word.
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'", "\u2010": "-"})


def normalize_word(text: str) -> str:
    """NFKC, casefold, ASCII apostrophes/hyphens: the one normalization tokens and lists share."""
    if text.isascii():
        # NFKC leaves ASCII as it is and casefold is lower() there; "`" is the one
        # ASCII character APOSTROPHES maps.  Most news text is ASCII.
        text = text.lower()
        return text.replace("`", "'") if "`" in text else text
    return unicodedata.normalize("NFKC", text).casefold().translate(APOSTROPHES)


def _load(words: str) -> frozenset[str]:
    return frozenset(normalize_word(w) for w in words.split())


ENGLISH: frozenset[str] = _load(_ENGLISH)
GERMAN: frozenset[str] = ENGLISH | _load(_GERMAN)
FRENCH: frozenset[str] = ENGLISH | _load(_FRENCH)
SPANISH: frozenset[str] = ENGLISH | _load(_SPANISH)

_BY_LANGUAGE: dict[str, frozenset[str]] = {"en": ENGLISH, "de": GERMAN, "fr": FRENCH, "es": SPANISH}


def primary_language(language: str | None) -> str:
    """"de-AT", "DE_de", " de " -> "de"; None or "" -> "en" (unknown languages read as English)."""
    if not language:
        return "en"
    tag = language.strip().replace("_", "-").split("-", 1)[0].lower()
    return tag if tag in _BY_LANGUAGE else "en"


def stopwords_for(language: str | None) -> frozenset[str]:
    """The stopword set for an event's `language` (English always included)."""
    return _BY_LANGUAGE[primary_language(language)]
