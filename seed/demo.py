"""Demo data for the CRM/ERP app in ``seed/crm``: the customers, contacts, products, sales
orders and service tickets of a maker of home appliances and industrial equipment.

The records hang together the way real ones do (a customer's account manager owns its
contacts and orders, key accounts order more and get better prices, old orders are paid
and recent ones still in approval, tickets past their deadline are the unfinished ones),
so that lists, filters and dashboards show something worth looking at.

Everything is drawn from one seeded random source and dates count back from a fixed day,
so the same seed always gives the same data: screenshots, tests and bug reports stay
comparable.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from faker import Faker

from loom.metadata.validators import uscc_check_character

Create = Callable[[str, list[dict[str, Any]]], list[int]]
Row = dict[str, Any]

#: the day the demo data is "as of" unless the caller passes another
DEMO_TODAY = dt.date(2026, 11, 20)

#: records per entity at scale 1
BASE_COUNTS = {"customer": 120, "contact": 200, "product": 40, "sales_order": 150, "service_ticket": 80}

CENT = Decimal("0.01")
REGIONS = ("east", "north", "south", "west", "central")


@dataclass(frozen=True)
class City:
    name: str
    region: str
    #: GB/T 2260 administrative division code: characters 3-8 of a credit code
    division: str
    area_code: str


CITIES = (
    City("上海", "east", "310115", "021"), City("南京", "east", "320100", "025"),
    City("苏州", "east", "320500", "0512"), City("杭州", "east", "330100", "0571"),
    City("宁波", "east", "330200", "0574"), City("合肥", "east", "340100", "0551"),
    City("福州", "east", "350100", "0591"), City("厦门", "east", "350200", "0592"),
    City("南昌", "east", "360100", "0791"), City("济南", "east", "370100", "0531"),
    City("青岛", "east", "370200", "0532"),
    City("北京", "north", "110105", "010"), City("天津", "north", "120116", "022"),
    City("石家庄", "north", "130100", "0311"), City("太原", "north", "140100", "0351"),
    City("呼和浩特", "north", "150100", "0471"), City("沈阳", "north", "210100", "024"),
    City("大连", "north", "210200", "0411"), City("长春", "north", "220100", "0431"),
    City("哈尔滨", "north", "230100", "0451"),
    City("广州", "south", "440100", "020"), City("深圳", "south", "440300", "0755"),
    City("佛山", "south", "440600", "0757"), City("东莞", "south", "441900", "0769"),
    City("南宁", "south", "450100", "0771"), City("海口", "south", "460100", "0898"),
    City("重庆", "west", "500103", "023"), City("成都", "west", "510100", "028"),
    City("贵阳", "west", "520100", "0851"), City("昆明", "west", "530100", "0871"),
    City("西安", "west", "610100", "029"), City("兰州", "west", "620100", "0931"),
    City("乌鲁木齐", "west", "650100", "0991"),
    City("郑州", "central", "410100", "0371"), City("武汉", "central", "420100", "027"),
    City("长沙", "central", "430100", "0731"),
)

# The kind of company a customer is decides how its name ends, so names and industries agree.
INDUSTRIES: dict[str, tuple[int, tuple[str, ...]]] = {
    "distribution": (20, ("机电设备有限公司", "电器销售有限公司", "商贸有限公司")),
    "retail": (15, ("电器连锁有限公司", "家电商贸有限公司", "百货有限公司")),
    "construction": (15, ("建设工程有限公司", "置业有限公司", "建筑安装工程有限公司")),
    "manufacturing": (15, ("机械制造有限公司", "精密制造有限公司", "实业有限公司")),
    "hospitality": (8, ("酒店管理有限公司", "餐饮管理有限公司")),
    "logistics": (7, ("物流有限公司", "供应链管理有限公司", "冷链物流有限公司")),
    "healthcare": (5, ("医疗器械有限公司", "医院管理有限公司")),
    "education": (5, ("教育发展有限公司", "后勤服务有限公司")),
    "public_sector": (4, ("城市建设投资有限公司", "水务集团有限公司", "公用事业有限公司")),
    "other": (6, ("物业服务有限公司", "实业有限公司")),
}
SIZES = {"micro": 10, "small": 35, "medium": 35, "large": 20}
CREDIT_LIMIT_RANGE = {"micro": (5, 20), "small": (20, 100), "medium": (100, 500), "large": (500, 2000)}
# Faker's trade names include IT words and places; an appliance buyer's name should not.
_TRADE_NAME = re.compile(r"[\u4e00-\u9fff]{2,4}")
_NOT_A_TRADE_NAME = re.compile(r"电子|软件|信息|计算机|电脑|科技|公司|数字|国际|济南|黄石|襄樊|开发区|浙大|中建|联通")

CUSTOMER_NOTES = (
    "年度框架协议客户，每季度回访一次。",
    "采购流程较长，需提前两周报价。",
    "对交货期要求严格，旺季需提前备货。",
    "财务要求每月对账，发票需注明项目名称。",
    "有定制包装需求，下单时确认唛头。",
    "总部统一采购，分公司自行收货。",
    "曾发生逾期回款，新订单需核对信用额度。",
    "项目型采购，关注招投标信息。",
)
CONTACT_ROLES = (
    "采购经理", "采购专员", "总经理", "副总经理", "财务经理", "设备部主管",
    "工程部经理", "技术负责人", "行政经理", "仓储主管", "项目经理",
)


@dataclass(frozen=True)
class Model:
    """A product model in the catalogue; each series makes its own variant of it."""

    category: str
    name: str
    model: str
    list_price: int


CATALOGUE = (
    Model("AC", "变频挂机空调 1匹", "KFR-26GW", 2399), Model("AC", "变频挂机空调 1.5匹", "KFR-35GW", 2999),
    Model("AC", "变频柜机空调 2匹", "KFR-50LW", 5699), Model("AC", "变频柜机空调 3匹", "KFR-72LW", 7999),
    Model("AC", "多联机中央空调 5匹", "RFC-125MXS", 18999),
    Model("RF", "十字对开门冰箱 508L", "BCD-508WP", 4599), Model("RF", "法式多门冰箱 420L", "BCD-420WF", 3899),
    Model("RF", "双门冰箱 218L", "BCD-218TM", 1599), Model("RF", "商用展示冷藏柜 680L", "SC-680", 4299),
    Model("WM", "滚筒洗衣机 10kg", "XQG100-BD14", 2899), Model("WM", "洗烘一体机 10kg", "XQG100-HBD14", 3999),
    Model("WM", "波轮洗衣机 8kg", "XQB80-36", 1199), Model("WM", "商用洗衣机 15kg", "XGQ-15", 8600),
    Model("WH", "燃气热水器 16L", "JSQ30-16", 2199), Model("WH", "电热水器 60L", "DSZF-60", 1399),
    Model("WH", "空气能热水器 200L", "KF70-200", 7800),
    Model("KA", "侧吸式油烟机", "CXW-230", 2799), Model("KA", "嵌入式燃气灶", "JZT-Q5", 1299),
    Model("KA", "嵌入式洗碗机 13套", "WQP12-13", 4599),
    Model("FAN", "离心风机 No.5A", "4-72-5A", 6800), Model("FAN", "轴流风机 6号", "SF6-4", 2350),
    Model("FAN", "屋顶排风机 8号", "DWT-8", 9600),
    Model("PMP", "立式多级离心泵 8m³/h", "CDL8-8", 5200), Model("PMP", "管道增压泵 DN65", "ISG65-160", 3800),
    Model("PMP", "潜水排污泵 DN50", "WQ50-15", 2600),
    Model("CMP", "螺杆空压机 22kW", "LG-22A", 36800), Model("CMP", "活塞空压机 7.5kW", "W-0.9-8", 9800),
    Model("CMP", "冷冻式干燥机 3.8m³", "CD-3.8", 6500),
)
#: series name, code for the SKU, price factor against the model's list price
SERIES = (("睿享", "RX", 1.0), ("悦家", "YJ", 0.9), ("臻品", "ZP", 1.25), ("劲驰", "JC", 1.1))
INDUSTRIAL = {"FAN", "PMP", "CMP"}

TICKET_KINDS = {"repair": 4, "support": 3, "complaint": 2, "return": 2}
TICKET_TITLES = {
    "complaint": ("{p}送货延误，客户投诉", "{p}安装人员服务态度差", "{p}外观划伤投诉",
                  "订单发票信息开错，客户不满", "{p}维修响应太慢投诉"),
    "return": ("{p}到货破损，申请换货", "{p}型号发错，申请退货", "{p}包装受潮，申请退货",
               "{p}开箱即故障，申请换机"),
    "repair": ("{p}运行异响", "{p}无法启动，报故障代码E{n}", "{p}漏水", "{p}运行时振动大",
               "{p}频繁跳闸"),
    "support": ("{p}安装调试指导", "{p}与楼宇控制系统对接咨询", "{p}保养周期咨询",
                "{p}远程监控App无法绑定"),
}
TICKET_PROGRESS = {
    "open": "待安排工程师联系客户。",
    "in_progress": "已派工程师跟进，正在处理。",
    "resolved": "已处理完毕，待客户确认。",
    "closed": "问题已解决，满意度回访已完成。",
}
TICKET_RESOLUTIONS = {
    "complaint": {"explained": 5, "replaced": 2, "fixed": 2, "cannot_fix": 0.3},
    "return": {"replaced": 9, "explained": 1},
    "repair": {"fixed": 8, "replaced": 1.5, "cannot_fix": 1},
    "support": {"explained": 7, "fixed": 3},
}
CANNOT_FIX_REASONS = (
    "主板型号已停产，无可用备件。",
    "故障由客户自行改装引起，超出保修范围。",
    "现场无法复现故障，客户拒绝返厂检测。",
)
PRIORITIES = ("low", "normal", "high", "urgent")
SLA_HOURS = {"low": 168, "normal": 72, "high": 24, "urgent": 4}


def populate(create: Create, *, user_ids: Sequence[int], seed: int = 0, scale: float = 1,
             today: dt.date = DEMO_TODAY, reps: Mapping[str, Sequence[int]] | None = None) -> dict[str, int]:
    """Create the demo records through ``create`` and return how many were made per entity.

    ``create(entity_name, rows)`` bulk-creates rows (all or nothing) and returns their new
    ids in order. ``user_ids`` are existing users who act as account managers, owners and
    assignees; with none, those fields are left empty. ``today`` is the day the data is
    "as of": orders lie in the year before it, open tickets are due around it. ``reps``
    names the sales reps of each region (by default ``user_ids`` are spread over regions).
    """
    return _Demo(create, list(user_ids), seed, scale, today, reps).run()


def decimal_text(value: Decimal | int | float) -> str:
    """A number as the API's decimal text with two places, e.g. ``"1234.50"``."""
    return str(Decimal(str(value)).quantize(CENT, ROUND_HALF_UP))


def credit_code(rng: random.Random, division: str) -> str:
    """A well-formed unified social credit code (GB 32100-2015) for a company registered in
    ``division``: "91" (market regulator, enterprise), the division code, a GB 11714
    organisation code with its own check digit, and the check character."""
    body = "".join(rng.choice("0123456789") for _ in range(8))
    total = sum(int(ch) * w for ch, w in zip(body, (3, 7, 9, 10, 5, 8, 4, 2), strict=True))
    check = 11 - total % 11
    org_code = body + {10: "X", 11: "0"}.get(check, str(check))
    first17 = "91" + division + org_code
    return first17 + uscc_check_character(first17)


class _Demo:
    """One run of ``populate``: its random sources, how many of each record to make, and
    the counts of what has been made so far."""

    def __init__(self, create: Create, user_ids: list[int], seed: int, scale: float, today: dt.date,
                 reps: Mapping[str, Sequence[int]] | None = None):
        self.create = create
        self.users = user_ids
        self.rng = random.Random(seed)
        self.fake = Faker("zh_CN")
        self.fake.seed_instance(seed)
        self.today = today
        self.counts = {name: max(1, round(n * scale)) for name, n in BASE_COUNTS.items()}
        # each region has its own sales reps, as the regional managers' teams do
        if reps:
            self.reps = {region: list(reps.get(region) or user_ids) for region in REGIONS}
        else:
            self.reps = {region: user_ids[i::len(REGIONS)] or [user_ids[i % len(user_ids)]]
                         for i, region in enumerate(REGIONS)} if user_ids else {}
        self.made: dict[str, int] = {}

    def run(self) -> dict[str, int]:
        customers = self.customers()
        self.contacts(customers)
        products = self.products()
        self.sales_orders(customers, products)
        self.service_tickets(customers, products)
        return self.made

    def save(self, entity: str, rows: list[Row]) -> list[int]:
        ids = self.create(entity, rows)
        if len(ids) != len(rows):
            raise RuntimeError(f"create({entity!r}) returned {len(ids)} ids for {len(rows)} rows")
        self.made[entity] = len(rows)
        return list(ids)

    # -- helpers ------------------------------------------------------------------------

    def weighted(self, weights: dict[str, float]) -> str:
        return self.rng.choices(list(weights), list(weights.values()))[0]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def trade_name(self) -> str:
        while True:
            name = self.fake.company_prefix()
            if _TRADE_NAME.fullmatch(name) and not _NOT_A_TRADE_NAME.search(name):
                return name

    def domain(self) -> str:
        # subdomains of example.com so no demo email can ever reach a real mailbox
        while True:
            word = self.fake.domain_word()
            if word.isalpha():
                return f"{word}.example.com"

    def mobile(self) -> str:
        return self.fake.phone_number()

    def landline(self, city: City) -> str:
        return f"{city.area_code}-{self.rng.randint(2, 8)}{self.rng.randrange(10 ** 7):07d}"

    # -- customers and contacts ------------------------------------------------------------

    def customers(self) -> list[Row]:
        rows: list[Row] = []
        names: set[str] = set()
        codes: set[str] = set()
        industries = {name: weight for name, (weight, _) in INDUSTRIES.items()}
        for _ in range(self.counts["customer"]):
            city = self.rng.choice(CITIES)
            industry = self.weighted(industries)
            name = self.customer_name(city, industry, names)
            names.add(name)
            code = credit_code(self.rng, city.division)
            while code in codes:
                code = credit_code(self.rng, city.division)
            codes.add(code)

            size = self.weighted(SIZES)
            level_weights = {"large": (5, 4, 1), "medium": (2, 5, 4), "small": (1, 3, 6), "micro": (0, 2, 8)}[size]
            level = self.weighted(dict(zip("ABC", level_weights, strict=True)))
            years = self.rng.randint(*{"A": (3, 15), "B": (1, 10), "C": (0, 5)}[level])
            terms = self.rng.choice({"A": (60, 90), "B": (30, 45, 60), "C": (0, 30, 30)}[level])
            # cash-in-advance customers (terms 0) get no credit
            low, high = CREDIT_LIMIT_RANGE[size]
            limit = 0 if terms == 0 else self.rng.randint(low, high) * 10_000 * (3 if level == "A" else 2) // 2

            domain = self.domain()
            row: Row = {
                "name": name, "credit_code": code, "industry": industry, "size": size,
                "cooperation_years": years, "level": level, "region": city.region,
                "credit_limit": decimal_text(limit), "payment_terms_days": terms,
                "tags": self.customer_tags(level, industry, years),
            }
            if self.users:
                row["account_manager"] = row["owner"] = self.rng.choice(self.reps[city.region])
            if self.chance(0.85):
                row["phone"] = self.landline(city)
            if self.chance(0.6):
                row["mobile"] = self.mobile()
            if self.chance(0.8):
                row["email"] = f"{self.rng.choice(('sales', 'info', 'purchase', 'service'))}@{domain}"
            if self.chance(0.6):
                row["website"] = f"https://www.{domain}"
            if self.chance(0.4):
                row["notes"] = self.rng.choice(CUSTOMER_NOTES)
            row["_domain"] = domain
            rows.append(row)
        ids = self.save("customer", [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows])
        for row, ident in zip(rows, ids, strict=True):
            row["id"] = ident
        return rows

    def customer_name(self, city: City, industry: str, taken: set[str]) -> str:
        suffixes = INDUSTRIES[industry][1]
        for _ in range(20):
            name = f"{city.name}{self.trade_name()}{self.rng.choice(suffixes)}"
            if name not in taken:
                return name
        # when a city runs out of fresh names, open a branch of an existing company
        while name in taken:
            name = f"{city.name}{self.trade_name()}{self.rng.choice(suffixes)}{self.rng.choice(CITIES).name}分公司"
        return name

    def customer_tags(self, level: str, industry: str, years: int) -> list[str]:
        odds = {
            "strategic": 0.3 if level == "A" else 0.0,
            "frequent_buyer": {"A": 0.8, "B": 0.4, "C": 0.05}[level],
            "custom_needs": 0.35 if industry in ("manufacturing", "construction", "hospitality") else 0.1,
            "price_sensitive": 0.3 if industry in ("distribution", "retail") or level == "C" else 0.1,
            "late_payer": 0.1,
            "new_customer": 1.0 if years == 0 else 0.0,
        }
        return [tag for tag, p in odds.items() if self.chance(p)]

    def contacts(self, customers: list[Row]) -> None:
        n = self.counts["contact"]
        # every customer has someone to call; bigger ones have more people to reach
        holders = customers[:n] + self.rng.choices(
            customers, [{"large": 4, "medium": 3, "small": 2, "micro": 1}[c["size"]] for c in customers],
            k=max(0, n - len(customers)))
        rows: list[Row] = []
        seen: set[int] = set()
        for customer in holders:
            first = customer["id"] not in seen
            seen.add(customer["id"])
            row: Row = {
                "name": self.fake.name(), "customer": customer["id"],
                "role": "采购经理" if first else self.rng.choice(CONTACT_ROLES),
            }
            if self.chance(0.95):
                row["mobile"] = self.mobile()
            if self.chance(0.7):
                row["email"] = f"{self.fake.user_name()}@{customer['_domain']}"
            # phone only for someone with a mobile: Loom requires one then
            channels = {"phone": 5 * ("mobile" in row), "wechat": 3 * ("mobile" in row), "email": 2 * ("email" in row)}
            if any(channels.values()) and self.chance(0.8):
                row["preferred_channel"] = self.weighted(channels)
            if "owner" in customer:
                row["owner"] = customer["owner"]
            rows.append(row)
        self.save("contact", rows)

    # -- products and orders -----------------------------------------------------------------

    def products(self) -> list[Row]:
        variants = [(model, series) for model in CATALOGUE for series in SERIES]
        self.rng.shuffle(variants)
        rows: list[Row] = []
        for i in range(self.counts["product"]):
            model, (series, code, factor) = variants[i % len(variants)]
            # past the catalogue's size, further generations of the same models
            generation = i // len(variants) + 1
            price = Decimal(model.list_price * factor * self.rng.uniform(0.95, 1.05))
            step = 100 if price >= 10_000 else 10
            price = (price / step).quantize(Decimal(1)) * step - (0 if step == 100 else 1)
            cost = price * Decimal(str(round(self.rng.uniform(0.55, 0.78), 3)))
            safety = self.rng.choice((5, 10, 20) if model.category in INDUSTRIAL else (20, 50, 80, 100, 150))
            stock = 0 if self.chance(0.05) else round(safety * self.rng.uniform(0.3, 6))
            rows.append({
                "sku": f"{model.category}-{model.model}-{code}{generation}",
                "name": f"{series}{model.name} {model.model}/{code}{generation}",
                "price": decimal_text(price), "cost": decimal_text(cost),
                "stock_on_hand": stock, "safety_stock": safety,
                "active": self.chance(0.9),
                "_category": model.category,
            })
        ids = self.save("product", [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows])
        for row, ident in zip(rows, ids, strict=True):
            row["id"] = ident
        return rows

    def order_status(self, age_days: int, late_payer: bool) -> str:
        if age_days <= 7:
            return self.weighted({"draft": 3, "submitted": 4, "approved": 2})
        if age_days <= 30:
            return self.weighted({"submitted": 1, "approved": 3, "delivered": 4})
        if age_days <= 90:
            return self.weighted({"approved": 1, "delivered": 2, "invoiced": 4 + 4 * late_payer, "paid": 4})
        return self.weighted({"delivered": 0.5, "invoiced": 1 + 4 * late_payer, "paid": 8})

    def sales_orders(self, customers: list[Row], products: list[Row]) -> None:
        active = [p for p in products if p["active"]] or products
        buyers = self.rng.choices(customers, [{"A": 6, "B": 3, "C": 1}[c["level"]] for c in customers],
                                  k=self.counts["sales_order"])
        dates = sorted(self.today - dt.timedelta(days=self.rng.randint(0, 364)) for _ in buyers)
        # numbers run per month in date order, as Loom gives them (SO-{yyyy}{mm}-{seq:5}); the
        # demo writes them as a migration of old orders would, and Loom's counters move past them
        sequence: dict[tuple[int, int], int] = {}
        rows: list[Row] = []
        for customer, ordered in zip(buyers, dates, strict=True):
            month = (ordered.year, ordered.month)
            sequence[month] = sequence.get(month, 0) + 1
            age = (self.today - ordered).days
            # discontinued products only turn up in older orders
            pool = products if age > 180 else active
            discount = {"A": (0.85, 0.92), "B": (0.9, 0.97), "C": (0.95, 1.0)}[customer["level"]]
            lines = []
            for product in self.rng.sample(pool, k=min(len(pool), self.rng.randint(1, 5))):
                quantity = Decimal(self.rng.randint(1, 6) if product["_category"] in INDUSTRIAL
                                   else self.rng.randint(2, 50))
                unit_price = (Decimal(product["price"]) * Decimal(str(round(self.rng.uniform(*discount), 3)))
                              ).quantize(CENT, ROUND_HALF_UP)
                # the amount Loom computes: quantity x unit price
                lines.append({"product": product["id"], "quantity": decimal_text(quantity),
                              "unit_price": decimal_text(unit_price)})
            delivery = ordered + dt.timedelta(days=self.rng.randint(5, 30))
            status = self.order_status(age, "late_payer" in customer["tags"])
            if delivery > self.today and status in ("delivered", "invoiced", "paid"):
                status = "approved"
            row: Row = {
                "number": f"SO-{month[0]}{month[1]:02d}-{sequence[month]:05d}", "customer": customer["id"],
                "order_date": ordered.isoformat(), "delivery_date": delivery.isoformat(),
                "status": status, "lines": lines,
                # bigger orders of key accounts get a discount off their total (Loom works it out)
                **({"discount": self.rng.choice(("2.00", "3.00", "5.00"))}
                   if customer["level"] == "A" and len(lines) >= 3 else {}),
            }
            if "owner" in customer:
                row["owner"] = customer["owner"]
            rows.append(row)
        self.save("sales_order", rows)
        self.made["sales_order_line"] = sum(len(row["lines"]) for row in rows)

    # -- service tickets ---------------------------------------------------------------------

    def service_tickets(self, customers: list[Row], products: list[Row]) -> None:
        now = dt.datetime.combine(self.today, dt.time(17, 30), tzinfo=dt.UTC)
        rows: list[Row] = []
        for _ in range(self.counts["service_ticket"]):
            customer = self.rng.choices(customers, [{"A": 3, "B": 2, "C": 1}[c["level"]] for c in customers])[0]
            product = self.rng.choice(products)
            kind = self.weighted(TICKET_KINDS)
            base = {"complaint": 2, "return": 1, "repair": 1, "support": 0}[kind]
            # key accounts' tickets go up a step: their problems reach management first
            rank = min(3, base + self.rng.choice((0, 0, 1)) + (customer["level"] == "A"))
            priority = PRIORITIES[rank]
            opened = now - dt.timedelta(minutes=self.rng.randint(10, 60 * 24 * 60))
            # the SLA deadline Loom computes from the priority and the customer's level
            due = opened + dt.timedelta(hours=SLA_HOURS[priority] * (0.5 if customer["level"] == "A" else 1))
            if due > now:
                status = self.weighted({"open": 3, "in_progress": 4, "resolved": 1})
            else:
                # a few overdue tickets are still unfinished: the SLA breaches a manager chases
                status = self.weighted({"open": 1, "in_progress": 2, "resolved": 4, "closed": 12})
            short = product["name"].split(" ")[0]
            title = self.rng.choice(TICKET_TITLES[kind]).format(p=short, n=self.rng.randint(1, 9))
            row: Row = {
                "title": title, "customer": customer["id"], "kind": kind, "priority": priority,
                "status": status, "opened_at": opened.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "description": (f"{customer['name']}来电：{title}。涉及产品 {product['name']}"
                                f"（{product['sku']}）。{TICKET_PROGRESS[status]}"),
            }
            if status in ("resolved", "closed"):
                row["resolution"] = self.weighted(TICKET_RESOLUTIONS[kind])
                if row["resolution"] == "cannot_fix":
                    row["reason"] = self.rng.choice(CANNOT_FIX_REASONS)
            if self.users:
                row["assignee"] = row["owner"] = self.rng.choice(self.users)
            rows.append(row)
        # numbered by the day each was opened, as Loom numbers them (TK-{yyyy}{mm}{dd}-{seq:4})
        rows.sort(key=lambda r: r["opened_at"])
        per_day: dict[str, int] = {}
        for row in rows:
            day = row["opened_at"][:10].replace("-", "")
            per_day[day] = per_day.get(day, 0) + 1
            row["number"] = f"TK-{day}-{per_day[day]:04d}"
        self.save("service_ticket", rows)
