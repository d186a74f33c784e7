// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {RewardsToken} from "../src/RewardsToken.sol";
import {SignedOperations} from "../src/SignedOperations.sol";

// Accounts with code that the tests set against the tokens. Built with the platform's contracts so the
// tests need no compiler; never deployed by the platform.

/// @notice Burns every bit of gas it is given, whatever is called: a hostile ERC-1271 signer, or the
/// target of an EIP-7702 delegation.
contract GasBurner {
    fallback() external payable {
        while (true) {}
    }
}

/// @notice An ERC-1271 wallet that accepts its owner's signatures.
contract OwnedWallet is IERC1271 {
    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 digest, bytes calldata signature) external view returns (bytes4) {
        return ECDSA.recoverCalldata(digest, signature) == owner ? this.isValidSignature.selector : bytes4(0);
    }
}

/// @notice An ERC-1155 receiver whose acceptance check uses about `burn` gas.
contract HungryReceiver {
    uint256 public immutable burn;

    constructor(uint256 burn_) {
        burn = burn_;
    }

    function onERC1155Received(address, address, uint256, uint256, bytes calldata) external view returns (bytes4) {
        uint256 start = gasleft();
        while (start - gasleft() < burn) {} // runs out of gas when given less than `burn`
        return this.onERC1155Received.selector;
    }
}

/// @notice An ERC-1155 receiver that, while accepting, emits look-alikes of the token's outcome events
/// for `victimRef` and calls `execute` again with an unsigned operation under that ref.
contract LookAlikeReceiver {
    event OperationExecuted(bytes32 indexed ref, address indexed signer);
    event OperationFailed(bytes32 indexed ref, address indexed signer, SignedOperations.Failure reason);

    bytes32 public victimRef;
    address public victimSigner;
    bool public reentered;
    bytes4 public reentryError;

    function arm(bytes32 ref, address signer) external {
        (victimRef, victimSigner) = (ref, signer);
    }

    function onERC1155Received(address, address, uint256 id, uint256, bytes calldata) external returns (bytes4) {
        emit OperationExecuted(victimRef, victimSigner);
        emit OperationFailed(victimRef, victimSigner, SignedOperations.Failure.InsufficientBalance);
        RewardsToken.Operation[] memory ops = new RewardsToken.Operation[](1);
        ops[0] = RewardsToken.Operation(address(0), address(this), id, 1, victimRef);
        RewardsToken.SignedGroup[] memory groups = new RewardsToken.SignedGroup[](1);
        groups[0] = RewardsToken.SignedGroup(victimSigner, ops, block.timestamp + 1, "");
        try RewardsToken(msg.sender).execute(groups) {
            reentered = true;
        } catch (bytes memory reason) {
            reentryError = bytes4(reason);
        }
        return this.onERC1155Received.selector;
    }
}
