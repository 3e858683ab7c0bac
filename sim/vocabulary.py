"""What buildings are made of: the kinds of building, their rooms and furniture, and the colour names.

Colours and materials are semantics people can ask for ("the red sofa"); COLORS gives each colour name the value the
scene (sim/mjcf.py) renders it with.
"""

from __future__ import annotations

from typing import NamedTuple

SHELF_DEPTH, SHELF_HEIGHT = 1.0, 2.2  # pallet racks

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.75, 0.15, 0.12),
    "blue": (0.18, 0.32, 0.70),
    "green": (0.22, 0.55, 0.25),
    "gray": (0.50, 0.50, 0.52),
    "dark gray": (0.20, 0.22, 0.26),
    "brown": (0.50, 0.33, 0.20),
    "white": (0.93, 0.93, 0.91),
    "black": (0.13, 0.13, 0.14),
    "beige": (0.86, 0.78, 0.62),
    "silver": (0.76, 0.77, 0.79),
    "yellow": (0.92, 0.76, 0.15),
    "orange": (0.90, 0.45, 0.10),
}


FLOOR_USES = ("room", "corridor")  # rooms of kind "room" have the first floor; corridors and aisles the second


def floor_use(room_kind: str) -> str:
    """Which of a building kind's two floors (FLOOR_USES) a room of this kind has."""
    return FLOOR_USES[0] if room_kind == "room" else FLOOR_USES[1]


class Item(NamedTuple):
    """A furniture category: placed against a wall, facing into the room."""

    size: tuple[float, float, float]  # along the wall, away from the wall, height
    material: str
    colors: tuple[str, ...]
    function: str
    mount_z: float | None = None  # wall-mounted items hang centred at this height and leave the floor free


ITEMS: dict[str, Item] = {
    "sofa": Item((2.0, 0.9, 0.85), "fabric", ("red", "blue", "gray", "green"), "a place to rest"),
    "armchair": Item((0.9, 0.85, 0.95), "fabric", ("brown", "red", "blue"), "a comfortable seat for one person"),
    "bench": Item((1.6, 0.45, 0.45), "wood", ("brown", "gray"), "a place to sit while waiting"),
    "bed": Item((1.6, 2.0, 0.6), "fabric", ("blue", "white", "green", "red"), "a bed for sleeping"),
    "hospital bed": Item((1.0, 2.1, 0.75), "metal", ("white", "blue"), "where a patient rests"),
    "desk": Item((1.4, 0.7, 0.75), "wood", ("brown", "white", "gray"), "a workplace with a computer"),
    "table": Item((1.6, 0.9, 0.75), "wood", ("brown", "white", "black"), "a table for meetings and meals"),
    "reception desk": Item((2.4, 0.8, 1.1), "wood", ("brown", "white"), "where visitors check in"),
    "nurse desk": Item((2.0, 0.8, 1.1), "wood", ("white", "blue"), "where nurses coordinate patient care"),
    "kitchen counter": Item((2.2, 0.6, 0.9), "ceramic", ("white", "gray", "beige"), "for preparing food and drinks"),
    "fridge": Item((0.7, 0.7, 1.8), "metal", ("white", "silver"), "keeps food and drinks cold"),
    "vending machine": Item((0.9, 0.8, 1.8), "metal", ("red", "blue"), "sells snacks and drinks"),
    "water cooler": Item((0.4, 0.4, 1.2), "plastic", ("blue", "white"), "dispenses drinking water"),
    "copier": Item((1.0, 0.7, 1.1), "plastic", ("gray", "white"), "prints and copies documents"),
    "server rack": Item((0.6, 1.0, 2.0), "metal", ("black",), "runs the IT servers"),
    "cabinet": Item((1.0, 0.5, 1.2), "metal", ("gray", "white", "blue"), "stores files and supplies"),
    "bookshelf": Item((1.2, 0.4, 1.9), "wood", ("brown", "white"), "holds books and binders"),
    "storage shelf": Item((1.5, 0.6, 2.0), "metal", ("gray", "blue"), "stores supplies in boxes"),
    "wardrobe": Item((1.6, 0.6, 2.0), "wood", ("brown", "white"), "stores clothes"),
    "plant": Item((0.5, 0.5, 1.3), "foliage", ("green",), "a decorative potted plant"),
    "fire extinguisher": Item((0.3, 0.25, 0.7), "metal", ("red",), "for putting out fires"),
    "charging dock": Item((0.6, 0.4, 0.5), "plastic", ("black", "white"), "recharges the robot's battery"),
    "iv stand": Item((0.5, 0.5, 1.8), "metal", ("silver",), "holds infusion bags"),
    "crash cart": Item((0.7, 0.5, 1.0), "metal", ("red",), "emergency resuscitation equipment"),
    "x-ray machine": Item((1.6, 1.2, 1.9), "metal", ("white",), "takes X-ray images"),
    "lab bench": Item((2.0, 0.75, 0.95), "ceramic", ("white", "gray"), "for analysing samples"),
    "bathtub": Item((1.7, 0.75, 0.55), "ceramic", ("white",), "for bathing"),
    "sink": Item((0.8, 0.5, 0.9), "ceramic", ("white",), "for washing hands"),
    "toilet": Item((0.45, 0.7, 0.8), "ceramic", ("white",), "a toilet"),
    "washing machine": Item((0.6, 0.6, 0.85), "metal", ("white",), "washes clothes"),
    "toy box": Item((0.8, 0.5, 0.5), "plastic", ("yellow", "red", "blue"), "stores toys"),
    "pallet stack": Item((1.2, 1.0, 1.3), "wood", ("brown",), "goods waiting to be shipped"),
    "packing table": Item((2.0, 0.9, 0.9), "wood", ("brown", "gray"), "where orders are packed"),
    "workbench": Item((2.0, 0.8, 0.95), "metal", ("gray", "blue"), "for repairing equipment"),
    "parked cart": Item((1.0, 0.6, 1.0), "metal", ("blue", "silver"), "a transport cart waiting for use"),
    "forklift charger": Item((0.8, 0.5, 1.4), "metal", ("yellow",), "charges forklift batteries"),
    "whiteboard": Item((1.8, 0.04, 1.0), "plastic", ("white",), "for writing during meetings", 1.45),
    "tv": Item((1.2, 0.06, 0.7), "plastic", ("black",), "shows news and presentations", 1.5),
}
RACK = Item((SHELF_DEPTH, 0.0, SHELF_HEIGHT), "metal", ("orange",), "stores pallets of goods")


class RoomSpec(NamedTuple):
    name: str
    function: str
    items: tuple[str, ...]


class KindSpec(NamedTuple):
    """Vocabulary and proportions of one kind of building."""

    lobby: RoomSpec
    corridor: RoomSpec
    rooms: tuple[RoomSpec, ...]  # the first `required` are always built
    required: int
    room_width: tuple[float, float]
    room_depth: tuple[float, float]
    corridor_width: tuple[float, float]
    lobby_width: tuple[float, float]
    rooms_per_row: tuple[int, int]
    aisles: tuple[int, int]  # (0, 0): the north row holds rooms; else that many rack aisles
    floors: tuple[str, str]  # textures.FLOOR_STYLES, one per FLOOR_USES: rooms, then corridors and aisles
    agents: tuple[str, ...]  # agent kinds added when dynamic; carts first, they need a corridor of their own


KINDS: dict[str, KindSpec] = {
    "office": KindSpec(
        lobby=RoomSpec("Reception", "visitor reception and waiting area", ("reception desk", "sofa", "plant")),
        corridor=RoomSpec("Corridor", "connects the offices", ("plant", "fire extinguisher", "water cooler")),
        rooms=(
            RoomSpec("Charging bay", "charging bay for robots", ("charging dock", "charging dock", "cabinet")),
            RoomSpec("Kitchen", "kitchen and coffee point", ("kitchen counter", "fridge", "table")),
            RoomSpec("Meeting room A", "meeting room", ("table", "whiteboard", "plant")),
            RoomSpec("Meeting room B", "meeting room", ("table", "tv", "plant")),
            RoomSpec("Open office", "open-plan workspace", ("desk", "desk", "bookshelf")),
            RoomSpec("Lounge", "resting area", ("sofa", "armchair", "tv")),
            RoomSpec("Print room", "printing and copying", ("copier", "cabinet")),
            RoomSpec("Server room", "IT equipment room", ("server rack", "server rack")),
            RoomSpec("Manager office", "private office", ("desk", "bookshelf", "armchair")),
            RoomSpec("Library", "quiet reading area", ("bookshelf", "bookshelf", "armchair")),
            RoomSpec("Supply room", "office supplies storage", ("storage shelf", "cabinet")),
        ),
        required=1,
        room_width=(4.0, 6.5),
        room_depth=(4.5, 6.5),
        corridor_width=(2.2, 2.6),
        lobby_width=(5.0, 7.0),
        rooms_per_row=(3, 4),
        aisles=(0, 0),
        floors=("carpet", "tiles"),
        agents=("cart", "person", "person", "person"),
    ),
    "hospital": KindSpec(
        lobby=RoomSpec("Reception", "patient check-in and waiting area", ("reception desk", "bench", "plant")),
        corridor=RoomSpec(
            "Main corridor", "connects the wards and departments", ("fire extinguisher", "bench", "crash cart")
        ),
        rooms=(
            RoomSpec("Nurse station", "nurse station", ("nurse desk", "cabinet", "crash cart")),
            RoomSpec("Radiology", "medical imaging (X-ray)", ("x-ray machine", "cabinet")),
            RoomSpec("Ward A", "patient ward", ("hospital bed", "hospital bed", "iv stand")),
            RoomSpec("Ward B", "patient ward", ("hospital bed", "hospital bed", "armchair")),
            RoomSpec("Pharmacy", "dispenses medication", ("storage shelf", "cabinet")),
            RoomSpec("Laboratory", "blood and sample analysis", ("lab bench", "fridge")),
            RoomSpec("Waiting room", "resting area for visitors", ("bench", "bench", "vending machine")),
            RoomSpec("Staff room", "resting area for staff", ("sofa", "table", "fridge")),
            RoomSpec("Charging bay", "charging bay for delivery robots", ("charging dock", "charging dock")),
            RoomSpec("Supply room", "medical supplies storage", ("storage shelf", "storage shelf", "parked cart")),
            RoomSpec("Cafeteria", "food and drinks", ("table", "table", "vending machine")),
        ),
        required=2,
        room_width=(4.5, 7.0),
        room_depth=(5.0, 7.0),
        corridor_width=(2.4, 3.0),
        lobby_width=(6.0, 8.0),
        rooms_per_row=(3, 4),
        aisles=(0, 0),
        floors=("vinyl", "tiles"),
        agents=("cart", "person", "person", "person"),
    ),
    "home": KindSpec(
        lobby=RoomSpec("Living room", "resting area with sofa and TV", ("sofa", "tv", "armchair", "plant")),
        corridor=RoomSpec("Hallway", "connects the rooms of the house", ("plant",)),
        rooms=(
            RoomSpec("Kitchen", "cooking and eating", ("kitchen counter", "fridge", "table")),
            RoomSpec("Bedroom", "sleeping", ("bed", "wardrobe", "plant")),
            RoomSpec("Guest bedroom", "sleeping for guests", ("bed", "wardrobe")),
            RoomSpec("Bathroom", "washing and toilet", ("bathtub", "sink", "toilet")),
            RoomSpec("Dining room", "family meals", ("table", "cabinet", "plant")),
            RoomSpec("Study", "working from home", ("desk", "bookshelf", "armchair")),
            RoomSpec("Laundry room", "washing clothes", ("washing machine", "cabinet")),
            RoomSpec("Kids room", "children's bedroom and play area", ("bed", "toy box", "bookshelf")),
            RoomSpec("Utility room", "charging bay for the home robot", ("charging dock", "storage shelf")),
        ),
        required=2,
        room_width=(3.8, 5.5),
        room_depth=(4.0, 5.5),
        corridor_width=(2.2, 2.4),
        lobby_width=(5.0, 6.5),
        rooms_per_row=(3, 3),
        aisles=(0, 0),
        floors=("wood", "wood"),
        agents=("person", "person"),
    ),
    "warehouse": KindSpec(
        lobby=RoomSpec(
            "Loading dock",
            "truck loading and unloading",
            ("pallet stack", "pallet stack", "pallet stack", "forklift charger"),
        ),
        corridor=RoomSpec("Main aisle", "cross aisle for carts and forklifts", ("fire extinguisher",) * 2),
        rooms=(
            RoomSpec(
                "Charging bay",
                "charging bay for robots and forklifts",
                ("charging dock", "charging dock", "forklift charger"),
            ),
            RoomSpec("Packing area", "order packing", ("packing table", "packing table")),
            RoomSpec("Shipping office", "shipping paperwork", ("desk", "cabinet")),
            RoomSpec("Break room", "resting area for staff", ("table", "vending machine", "sofa")),
            RoomSpec("Returns area", "processing returned goods", ("pallet stack", "packing table")),
            RoomSpec("Cart parking", "where carts are parked", ("parked cart",) * 3),
            RoomSpec("Maintenance", "forklift maintenance", ("workbench", "cabinet")),
        ),
        required=1,
        room_width=(5.0, 7.0),
        room_depth=(5.0, 6.5),
        corridor_width=(3.0, 3.4),
        lobby_width=(6.0, 8.0),
        rooms_per_row=(3, 4),
        aisles=(4, 6),
        floors=("concrete", "concrete"),
        agents=("cart", "cart", "person", "person"),
    ),
}
AISLE_FUNCTION = "pallet rack storage"
BACK_AISLE = RoomSpec("Back aisle", "rear cross aisle behind the racks", ("fire extinguisher",))

# The phrasing bank: how people ask for a place, the evaluation's instructions (sim/missions.py). Templates name a
# room ({room}), a task done in a room or with a piece of furniture ({task}), or a piece of furniture qualified by
# its room ({landmark} in {room}). Tasks are verb phrases ("print a document"), unlike the map's descriptions.
ROOM_PHRASINGS = ("take me to the {room}", "go to the {room}", "where is the {room}?", "I want to go to the {room}")
TASK_PHRASINGS = ("I need to {task}", "where can I {task}?", "I want to {task}", "take me where I can {task}")
LANDMARK_PHRASINGS = ("the {landmark} in the {room}", "go to the {landmark} in the {room}")
ROOM_TASKS: dict[str, tuple[str, ...]] = {
    "Reception": ("check in as a visitor", "sign in at the front desk"),
    "Charging bay": ("recharge the robot", "charge the robot's battery"),
    "Kitchen": ("make a coffee", "prepare some food"),
    "Meeting room A": ("hold a meeting",),
    "Meeting room B": ("hold a meeting",),
    "Open office": ("work at a desk",),
    "Lounge": ("relax for a while",),
    "Print room": ("print something", "make photocopies"),
    "Server room": ("check on the IT servers", "fix the network servers"),
    "Manager office": ("talk to the manager",),
    "Library": ("read a book quietly", "find a book"),
    "Supply room": ("get some supplies", "fetch office supplies"),
    "Nurse station": ("talk to a nurse",),
    "Radiology": ("get an X-ray", "have a scan taken"),
    "Ward A": ("visit a patient",),
    "Ward B": ("visit a patient",),
    "Pharmacy": ("pick up my medication", "collect a prescription"),
    "Laboratory": ("have my blood tested", "drop off a sample for analysis"),
    "Waiting room": ("wait for my appointment",),
    "Staff room": ("take a staff break",),
    "Cafeteria": ("have lunch", "buy a meal"),
    "Bedroom": ("go to sleep",),
    "Guest bedroom": ("put up a guest for the night",),
    "Bathroom": ("take a bath", "use the toilet"),
    "Dining room": ("have dinner with the family",),
    "Study": ("work from home",),
    "Laundry room": ("wash my clothes", "do the laundry"),
    "Kids room": ("play with the children's toys",),
    "Utility room": ("recharge the robot",),
    "Loading dock": ("unload a truck", "load goods onto a truck"),
    "Packing area": ("pack an order", "prepare a parcel for shipping"),
    "Shipping office": ("do the shipping paperwork",),
    "Break room": ("take a break", "buy a snack"),
    "Returns area": ("process a returned item", "handle a customer return"),
    "Cart parking": ("park a cart", "pick up a transport cart"),
    "Maintenance": ("repair a forklift", "fix some equipment"),
}
ITEM_TASKS: dict[str, tuple[str, ...]] = {
    "sofa": ("lie down on a sofa",),
    "bed": ("lie down and sleep", "go to sleep"),  # one sleeps at any bed: a Bedroom is not the only answer
    "reception desk": ("check in as a visitor",),
    "kitchen counter": ("prepare some food",),
    "fridge": ("get something cold from the fridge",),
    "vending machine": ("buy a snack",),
    "water cooler": ("get a glass of water", "have a drink of water"),
    "copier": ("print something", "make photocopies"),
    "server rack": ("check on the IT servers",),
    "bookshelf": ("find a book",),
    "fire extinguisher": ("put out a fire",),
    "charging dock": ("recharge the robot",),
    "x-ray machine": ("get an X-ray",),
    "lab bench": ("drop off a sample for analysis",),
    "bathtub": ("take a bath",),
    "toilet": ("use the toilet",),
    "washing machine": ("wash my clothes",),
    "toy box": ("play with the children's toys",),
    "pallet stack": ("load goods onto a truck",),
    "packing table": ("pack an order",),
    "workbench": ("repair a forklift", "fix some equipment"),
    "forklift charger": ("charge a forklift",),
    "whiteboard": ("write on the whiteboard",),
    "tv": ("watch the news on TV",),
}
