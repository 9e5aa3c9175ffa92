import unittest

from inventory import reorder_list, restock, take
from inventory.auth import may_change_stock


class StockTest(unittest.TestCase):
    def test_take_refuses_more_than_in_stock(self) -> None:
        with self.assertRaises(ValueError):
            take({"tea": 1}, "tea", 2)

    def test_restock_then_take(self) -> None:
        self.assertEqual(take(restock({}, "tea", 3), "tea", 1), {"tea": 2})

    def test_reorder_list_is_sorted(self) -> None:
        self.assertEqual(reorder_list({"tea": 1, "jam": 9, "oat": 0}), ["oat", "tea"])

    def test_only_staff_may_change_stock(self) -> None:
        self.assertTrue(may_change_stock("s3", {"s1", "s3"}))
        self.assertFalse(may_change_stock("x", {"s1"}))


if __name__ == "__main__":
    unittest.main()
