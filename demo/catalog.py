"""The demo catalog: a few sites and a realistic spread of SKUs with costs."""

from decimal import Decimal

DEMO_SITES = [
    ("ams-dc", "Amsterdam distribution centre", "Europe/Amsterdam"),
    ("rtm-hub", "Rotterdam micro-fulfillment hub", "Europe/Amsterdam"),
    ("utr-hub", "Utrecht micro-fulfillment hub", "Europe/Amsterdam"),
    ("ehv-store", "Eindhoven store", "Europe/Amsterdam"),
]

# code, name, unit cost, reorder point
DEMO_SKUS = [
    ("MILK-1L", "Organic whole milk 1 L", Decimal("0.95"), 40),
    ("EGGS-12", "Free-range eggs, 12", Decimal("2.10"), 30),
    ("BREAD-SD", "Sourdough loaf", Decimal("1.80"), 25),
    ("COFFEE-500", "Coffee beans 500 g", Decimal("6.40"), 20),
    ("TEA-GRN", "Green tea, 40 bags", Decimal("2.75"), 15),
    ("RICE-2KG", "Basmati rice 2 kg", Decimal("3.20"), 20),
    ("PASTA-500", "Penne 500 g", Decimal("0.85"), 40),
    ("OIL-OLV", "Olive oil 750 ml", Decimal("5.90"), 15),
    ("TOM-CAN", "Chopped tomatoes 400 g", Decimal("0.60"), 50),
    ("BANANA-KG", "Bananas per kg", Decimal("0.90"), 30),
    ("APPLE-6", "Apples, 6 pack", Decimal("1.70"), 25),
    ("AVO-2", "Avocados, 2 pack", Decimal("1.95"), 20),
    ("CHS-GOUDA", "Gouda cheese 400 g", Decimal("3.80"), 20),
    ("YOG-GRK", "Greek yoghurt 500 g", Decimal("1.45"), 30),
    ("WATER-6", "Sparkling water 6 x 1.5 L", Decimal("2.40"), 25),
    ("JUICE-OJ", "Orange juice 1 L", Decimal("1.65"), 25),
    ("CHOC-DRK", "Dark chocolate 100 g", Decimal("1.10"), 30),
    ("CRISPS-SLT", "Salted crisps 200 g", Decimal("0.95"), 30),
    ("DIAPER-M", "Diapers size M, 40", Decimal("9.50"), 10),
    ("DETERG-2L", "Laundry detergent 2 L", Decimal("6.80"), 10),
    ("TP-12", "Toilet paper, 12 rolls", Decimal("4.30"), 15),
    ("SOAP-HND", "Hand soap 300 ml", Decimal("1.35"), 20),
    ("SHAMP-400", "Shampoo 400 ml", Decimal("2.90"), 15),
    ("TOOTH-PST", "Toothpaste 75 ml", Decimal("1.25"), 20),
    ("BATT-AA8", "AA batteries, 8", Decimal("4.60"), 10),
    ("CHARGER-C", "USB-C charger 20 W", Decimal("11.00"), 8),
    ("CABLE-C1M", "USB-C cable 1 m", Decimal("3.10"), 12),
    ("EARBUDS", "Wireless earbuds", Decimal("24.00"), 5),
    ("PHONE-CASE", "Phone case, universal", Decimal("3.50"), 10),
    ("BULB-LED", "LED bulb E27", Decimal("2.20"), 15),
    ("DOGFOOD-3", "Dog food 3 kg", Decimal("8.40"), 8),
    ("CATLIT-10", "Cat litter 10 L", Decimal("4.90"), 8),
    ("WINE-RED", "Red wine 750 ml", Decimal("5.20"), 12),
    ("BEER-6", "Lager, 6 x 330 ml", Decimal("4.10"), 15),
    ("FLOUR-1KG", "Wheat flour 1 kg", Decimal("0.75"), 25),
    ("SUGAR-1KG", "Cane sugar 1 kg", Decimal("1.05"), 20),
    ("BUTTER-250", "Butter 250 g", Decimal("2.05"), 25),
    ("SALMON-2", "Salmon fillets, 2", Decimal("5.60"), 10),
    ("CHICK-500", "Chicken breast 500 g", Decimal("4.20"), 15),
    ("TOFU-400", "Organic tofu 400 g", Decimal("1.60"), 15),
]

DEMO_USERS = [
    # username, password, group, is_superuser
    ("manager", "manager-demo", "managers", False),
    ("staff", "staff-demo", "stock-staff", False),
    ("oncall", "oncall-demo", "on-call", False),
    ("admin", "admin-demo", None, True),
]
